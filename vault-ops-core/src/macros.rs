//! Macros shared by the API modules and, hidden from the docs, by the other vault-ops crates.

/// Chainable setters for the request builders (`fn name(mut self, ...) -> Self`), one line
/// each, with its doc comment. The kind in parentheses says what the setter takes and how it
/// stores it; `in parent` sets the field of that name inside the struct field `parent`
/// (e.g. a nested `config` block):
///
/// - `fn mount(string);` — a `String` field, from anything `Into<String>`.
/// - `fn ttl(into);` — an `Option<String>` field, from anything `Into<String>`.
/// - `fn alt_names(list);` — a `Vec<String>` field, from any list of string-likes.
/// - `fn key_bits(Some(u32));` — an `Option<T>` field, from a `T`.
/// - `fn local(bool);` — a plain field of that type.
/// - `fn option(entry options);` — one `key`, `value` entry inserted into the map `options`.
#[doc(hidden)]
#[macro_export]
macro_rules! setters {
    () => {};
    ($(#[$doc:meta])* fn $name:ident(string) $(in $parent:ident)?; $($rest:tt)*) => {
        $(#[$doc])*
        pub fn $name(mut self, value: impl Into<String>) -> Self {
            self $(.$parent)? .$name = value.into();
            self
        }
        $crate::setters!($($rest)*);
    };
    ($(#[$doc:meta])* fn $name:ident(into) $(in $parent:ident)?; $($rest:tt)*) => {
        $(#[$doc])*
        pub fn $name(mut self, value: impl Into<String>) -> Self {
            self $(.$parent)? .$name = Some(value.into());
            self
        }
        $crate::setters!($($rest)*);
    };
    ($(#[$doc:meta])* fn $name:ident(list) $(in $parent:ident)?; $($rest:tt)*) => {
        $(#[$doc])*
        pub fn $name<S: Into<String>>(mut self, values: impl IntoIterator<Item = S>) -> Self {
            self $(.$parent)? .$name = values.into_iter().map(Into::into).collect();
            self
        }
        $crate::setters!($($rest)*);
    };
    ($(#[$doc:meta])* fn $name:ident(entry $map:ident); $($rest:tt)*) => {
        $(#[$doc])*
        pub fn $name(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
            self.$map.insert(key.into(), value.into());
            self
        }
        $crate::setters!($($rest)*);
    };
    ($(#[$doc:meta])* fn $name:ident(Some($t:ty)) $(in $parent:ident)?; $($rest:tt)*) => {
        $(#[$doc])*
        pub fn $name(mut self, value: $t) -> Self {
            self $(.$parent)? .$name = Some(value);
            self
        }
        $crate::setters!($($rest)*);
    };
    ($(#[$doc:meta])* fn $name:ident($t:ty) $(in $parent:ident)?; $($rest:tt)*) => {
        $(#[$doc])*
        pub fn $name(mut self, value: $t) -> Self {
            self $(.$parent)? .$name = value;
            self
        }
        $crate::setters!($($rest)*);
    };
}
