//! The format of generated keys: [`KeyFormat`] and its [`Alphabet`].

use rand::Rng;
use vault_ops_core::ApiKey;

use crate::RotationError;

/// The smallest key entropy [`KeyFormat`] accepts, in bits.
pub const MIN_KEY_BITS: f64 = 128.0;

/// The characters a generated key is made of (no duplicates, no whitespace or control
/// characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alphabet(Vec<char>);

impl Alphabet {
    /// `A-Z a-z 0-9` (62 characters, ~5.95 bits each). The default.
    pub fn alphanumeric() -> Self {
        Alphabet(('A'..='Z').chain('a'..='z').chain('0'..='9').collect())
    }

    /// `0-9 a-f` (4 bits each).
    pub fn hex_lower() -> Self {
        Alphabet(('0'..='9').chain('a'..='f').collect())
    }

    /// The URL-safe base64 alphabet `A-Z a-z 0-9 - _` (6 bits each).
    pub fn base64url() -> Self {
        let mut v = Self::alphanumeric().0;
        v.extend(['-', '_']);
        Alphabet(v)
    }

    /// These characters. At least 2, no duplicates, no whitespace or control characters.
    pub fn custom(chars: &str) -> Result<Self, RotationError> {
        let v: Vec<char> = chars.chars().collect();
        if v.len() < 2 {
            return Err(RotationError::Config(
                "an alphabet needs at least 2 characters".into(),
            ));
        }
        if v.iter().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(RotationError::Config(
                "an alphabet must not contain whitespace or control characters".into(),
            ));
        }
        let mut sorted = v.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != v.len() {
            return Err(RotationError::Config(
                "an alphabet must not repeat a character (it would bias the keys)".into(),
            ));
        }
        Ok(Alphabet(v))
    }

    /// The characters.
    pub fn chars(&self) -> &[char] {
        &self.0
    }

    /// Bits of entropy per character.
    pub fn bits_per_char(&self) -> f64 {
        (self.0.len() as f64).log2()
    }
}

/// The format of a generated key: `prefix` + `length` characters drawn uniformly from the
/// alphabet with the thread-local CSPRNG of `rand` (ChaCha, seeded from the OS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFormat {
    prefix: String,
    length: usize,
    alphabet: Alphabet,
}

impl Default for KeyFormat {
    /// 40 alphanumeric characters (~238 bits), no prefix.
    fn default() -> Self {
        KeyFormat::new(40, Alphabet::alphanumeric())
    }
}

impl KeyFormat {
    /// `length` characters from `alphabet`, no prefix.
    pub fn new(length: usize, alphabet: Alphabet) -> Self {
        KeyFormat {
            prefix: String::new(),
            length,
            alphabet,
        }
    }

    /// A fixed prefix (e.g. `sk_live_`), not counted in the length.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The random part's length.
    pub fn length(&self) -> usize {
        self.length
    }

    /// The alphabet.
    pub fn alphabet(&self) -> &Alphabet {
        &self.alphabet
    }

    /// The prefix.
    pub fn get_prefix(&self) -> &str {
        &self.prefix
    }

    /// Entropy of a key, in bits.
    pub fn bits(&self) -> f64 {
        self.length as f64 * self.alphabet.bits_per_char()
    }

    /// Checks that keys have at least [`MIN_KEY_BITS`] of entropy and a prefix without
    /// whitespace or control characters.
    pub fn validate(&self) -> Result<(), RotationError> {
        if self.bits() < MIN_KEY_BITS {
            return Err(RotationError::Config(format!(
                "keys of {} characters from an alphabet of {} have {:.0} bits of entropy; at least {MIN_KEY_BITS} are required",
                self.length,
                self.alphabet.0.len(),
                self.bits()
            )));
        }
        if self
            .prefix
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(RotationError::Config(
                "the key prefix must not contain whitespace or control characters".into(),
            ));
        }
        Ok(())
    }

    /// A new random key.
    pub fn generate(&self) -> ApiKey {
        let mut rng = rand::rng();
        let n = self.alphabet.0.len();
        let mut key = String::with_capacity(self.prefix.len() + self.length * 4);
        key.push_str(&self.prefix);
        for _ in 0..self.length {
            key.push(self.alphabet.0[rng.random_range(0..n)]);
        }
        ApiKey::new(key)
    }

    /// `true` when `key` has this format.
    pub fn matches(&self, key: &str) -> bool {
        match key.strip_prefix(self.prefix.as_str()) {
            Some(rest) => {
                rest.chars().count() == self.length
                    && rest.chars().all(|c| self.alphabet.0.contains(&c))
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vault_ops_core::ExposeSecret;

    #[test]
    fn generated_keys_have_the_format_and_debug_redacts_them() {
        let format = KeyFormat::new(32, Alphabet::hex_lower()).prefix("sk_test_");
        let key = format.generate();
        assert!(format.matches(key.expose_secret()));
        assert_eq!(format!("{key:?}"), "ApiKey([REDACTED])");
    }
}
