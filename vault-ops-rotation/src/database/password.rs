//! How new database passwords are made: [`PasswordPolicy`].

use vault_ops_core::{ExposeSecret, Password};

use crate::RotationError;

/// The smallest password entropy [`PasswordPolicy`] accepts, in bits
/// (`length × log2(alphabet size)`).
pub const MIN_PASSWORD_BITS: f64 = 128.0;

/// How new passwords are made: `length` characters drawn uniformly from `alphabet` by the
/// operating system–seeded CSPRNG of `rand` (ChaCha).
///
/// [`validate`](Self::validate) (run before every rotation) refuses a policy whose passwords
/// have less than [`MIN_PASSWORD_BITS`] of entropy, or whose alphabet repeats a character (a
/// repeated character is drawn more often, which biases the passwords).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PasswordPolicy {
    /// Characters per password (16..=1024).
    pub length: usize,
    /// The characters to draw from (at least 10, each once, printable, no whitespace).
    pub alphabet: Vec<char>,
}

impl Default for PasswordPolicy {
    /// 32 characters of `A-Za-z0-9` (about 190 bits).
    fn default() -> Self {
        PasswordPolicy {
            length: 32,
            alphabet: ('A'..='Z').chain('a'..='z').chain('0'..='9').collect(),
        }
    }
}

impl PasswordPolicy {
    /// A policy with this length and alphabet.
    pub fn new(length: usize, alphabet: &str) -> Self {
        PasswordPolicy {
            length,
            alphabet: alphabet.chars().collect(),
        }
    }

    /// The default alphabet plus `-_.~!#%^*+=` (URL- and shell-friendly symbols): 73
    /// characters, about 6.19 bits each, so `length` must be at least 21 (128 bits).
    pub fn with_symbols(length: usize) -> Self {
        let mut p = PasswordPolicy {
            length,
            ..PasswordPolicy::default()
        };
        p.alphabet.extend("-_.~!#%^*+=".chars());
        p
    }

    /// Entropy of a password, in bits: `length × log2(alphabet size)` (the alphabet counted
    /// as given; [`validate`](Self::validate) refuses repeated characters).
    pub fn bits(&self) -> f64 {
        self.length as f64 * (self.alphabet.len() as f64).log2()
    }

    /// Checks the policy: a length in 16..=1024, an alphabet of at least 10 characters with no
    /// character twice and no whitespace or control characters, and at least
    /// [`MIN_PASSWORD_BITS`] of entropy.
    pub fn validate(&self) -> Result<(), RotationError> {
        if !(16..=1024).contains(&self.length) {
            return Err(RotationError::Config(format!(
                "password length {} is outside 16..=1024",
                self.length
            )));
        }
        let mut distinct = self.alphabet.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() != self.alphabet.len() {
            return Err(RotationError::Config(
                "the password alphabet must not repeat a character (it would bias the passwords)"
                    .into(),
            ));
        }
        if distinct.len() < 10 {
            return Err(RotationError::Config(
                "the password alphabet needs at least 10 characters".into(),
            ));
        }
        if distinct.iter().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(RotationError::Config(
                "the password alphabet must not contain whitespace or control characters".into(),
            ));
        }
        if self.bits() < MIN_PASSWORD_BITS {
            return Err(RotationError::Config(format!(
                "passwords of {} characters from an alphabet of {} have {:.1} bits of entropy; at least {MIN_PASSWORD_BITS} are required",
                self.length,
                self.alphabet.len(),
                self.bits()
            )));
        }
        Ok(())
    }

    /// A new password.
    pub fn generate(&self) -> Result<Password, RotationError> {
        use rand::Rng;
        self.validate()?;
        let mut rng = rand::rng();
        let password: String = (0..self.length)
            .map(|_| self.alphabet[rng.random_range(0..self.alphabet.len())])
            .collect();
        Ok(Password::from(password))
    }
}

/// `true` when `password` could have been made by `policy`: its length, and only characters
/// of its alphabet.
pub(super) fn policy_allows(policy: &PasswordPolicy, password: &Password) -> bool {
    let password = password.expose_secret();
    password.chars().count() == policy.length
        && password.chars().all(|c| policy.alphabet.contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_policy_generates_from_the_alphabet() {
        let policy = PasswordPolicy::default();
        let a = policy.generate().unwrap();
        let b = policy.generate().unwrap();
        assert_eq!(a.expose_secret().len(), 32);
        assert!(a.expose_secret().chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a.expose_secret(), b.expose_secret());
        let custom = PasswordPolicy::new(64, "abcdefghij");
        let p = custom.generate().unwrap();
        assert_eq!(p.expose_secret().chars().count(), 64);
        assert!(p.expose_secret().chars().all(|c| ('a'..='j').contains(&c)));
        // Every character of a small alphabet shows up over a long password (uniform draw).
        let all: std::collections::BTreeSet<char> = p.expose_secret().chars().collect();
        assert!(all.len() >= 8, "{all:?}");
    }

    #[test]
    fn password_policy_rejects_weak_settings() {
        for bad in [
            PasswordPolicy::new(15, "abcdefghijklmnop"),
            PasswordPolicy::new(2000, "abcdefghijklmnop"),
            PasswordPolicy::new(32, "aaaaaaaaaaaaaaaaab"),
            PasswordPolicy::new(32, "abcdefghij k"),
        ] {
            assert!(
                matches!(bad.generate(), Err(RotationError::Config(_))),
                "{bad:?}"
            );
        }
        assert!(PasswordPolicy::with_symbols(21).validate().is_ok());
    }

    fn refusal(policy: &PasswordPolicy) -> String {
        match policy.validate() {
            Err(RotationError::Config(message)) => message,
            other => panic!("{policy:?}: expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn password_policy_refuses_repeated_characters() {
        // Plenty of length and distinct characters, but `a` twice: it would be drawn twice as
        // often as the others.
        let repeated = PasswordPolicy::new(64, "abcdefghijklmnopqrstuvwxyza");
        assert!(refusal(&repeated).contains("repeat"), "{repeated:?}");
        assert!(repeated.generate().is_err());
        let mut symbols = PasswordPolicy::with_symbols(40);
        symbols.alphabet.push('A');
        assert!(refusal(&symbols).contains("repeat"));
        symbols.alphabet.pop();
        assert!(symbols.validate().is_ok());
    }

    #[test]
    fn password_policy_needs_128_bits() {
        const DIGITS: &str = "0123456789";
        const HEX: &str = "0123456789abcdef";
        // 16 digits: 53 bits, which the old checks accepted.
        for weak in [
            PasswordPolicy::new(16, DIGITS),
            PasswordPolicy::new(38, DIGITS),
            PasswordPolicy::new(31, HEX),
            PasswordPolicy::with_symbols(16),
            PasswordPolicy::with_symbols(20),
            PasswordPolicy::new(
                21,
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            ),
        ] {
            assert!(weak.bits() < MIN_PASSWORD_BITS, "{weak:?}");
            let message = refusal(&weak);
            assert!(message.contains("bits of entropy"), "{message}");
            assert!(weak.generate().is_err());
        }
        for strong in [
            PasswordPolicy::new(39, DIGITS),
            PasswordPolicy::new(32, HEX),
            PasswordPolicy::with_symbols(21),
            PasswordPolicy::new(
                22,
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            ),
        ] {
            assert!(strong.bits() >= MIN_PASSWORD_BITS, "{strong:?}");
            assert!(strong.validate().is_ok(), "{strong:?}");
        }
        // Exactly 128 bits is enough.
        assert_eq!(PasswordPolicy::new(32, HEX).bits(), 128.0);
        // The preset default is well above the floor.
        let default = PasswordPolicy::default();
        assert!(default.bits() > 190.0, "{}", default.bits());
        assert!(default.validate().is_ok());
    }
}
