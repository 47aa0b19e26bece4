//! Users as the fair share sees them: the name a submit carries (metadata `ablate-user`,
//! set by `ablate submit --user`, default `$USER`) and the weights an operator gives users
//! (`ablate serve --user-weight NAME=W`).
//!
//! The name is declared by the client, not proven: every user shares one user token, so
//! the per-user share keeps honest users from crowding each other out (three experiments
//! do not get three shares); it is not a security boundary.

/// The gRPC metadata key of the submitting user's name.
pub const USER_METADATA_KEY: &str = "ablate-user";

/// The longest user name accepted.
pub const MAX_USER_BYTES: usize = 64;

/// The largest weight a user can be given.
pub const MAX_USER_WEIGHT: u32 = 100;

/// A user name the fair share does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserNameError {
    /// No name at all.
    #[error("the user name is empty")]
    Empty,
    /// Longer than [`MAX_USER_BYTES`].
    #[error("the user name is {0} bytes long; the limit is {MAX_USER_BYTES}")]
    TooLong(usize),
    /// A character outside the allowed set.
    #[error(
        "the user name has `{}`; it may have ASCII letters, digits, `.`, `_`, `-` and `@`",
        .0.escape_default()
    )]
    Character(char),
}

/// A `--user-weight` value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserWeightError {
    /// No `=`.
    #[error("`{0}`: expected NAME=WEIGHT, e.g. alice=2")]
    NoEquals(String),
    /// The name is not a user name.
    #[error("`{text}`: {source}")]
    Name {
        /// The value as given.
        text: String,
        /// What is wrong with the name.
        #[source]
        source: UserNameError,
    },
    /// The weight is not an integer in range.
    #[error("`{0}`: the weight must be an integer from 1 to {MAX_USER_WEIGHT}")]
    Weight(String),
}

/// Checks a user name: 1 to [`MAX_USER_BYTES`] bytes of ASCII letters, digits, `.`, `_`,
/// `-` or `@`.
pub fn check_user_name(name: &str) -> Result<(), UserNameError> {
    if name.is_empty() {
        return Err(UserNameError::Empty);
    }
    if name.len() > MAX_USER_BYTES {
        return Err(UserNameError::TooLong(name.len()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@')))
    {
        return Err(UserNameError::Character(c));
    }
    Ok(())
}

/// Parses `NAME=WEIGHT` (`--user-weight`), the weight an integer from 1 to
/// [`MAX_USER_WEIGHT`].
pub fn parse_user_weight(text: &str) -> Result<(String, u32), UserWeightError> {
    let (name, weight) = text
        .split_once('=')
        .ok_or_else(|| UserWeightError::NoEquals(text.to_string()))?;
    check_user_name(name).map_err(|source| UserWeightError::Name {
        text: text.to_string(),
        source,
    })?;
    let weight: u32 = weight
        .trim()
        .parse()
        .ok()
        .filter(|w| (1..=MAX_USER_WEIGHT).contains(w))
        .ok_or_else(|| UserWeightError::Weight(text.to_string()))?;
    Ok((name.to_string(), weight))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message `check_user_name` refuses `name` with.
    fn name_refused(name: &str) -> String {
        check_user_name(name).unwrap_err().to_string()
    }

    /// The message `parse_user_weight` refuses `text` with.
    fn weight_refused(text: &str) -> String {
        parse_user_weight(text).unwrap_err().to_string()
    }

    #[test]
    fn user_names_are_short_plain_ascii() {
        assert_eq!(check_user_name("alice.b-c_d@lab"), Ok(()));
        assert!(name_refused("").contains("empty"));
        assert!(name_refused(&"a".repeat(65)).contains("65 bytes long; the limit is 64"));
        assert!(name_refused("bob\n").contains("`\\n`"));
        assert!(name_refused("b ob").contains("` `"));
    }

    #[test]
    fn user_weights_parse_with_bounds() {
        assert_eq!(parse_user_weight("alice=3"), Ok(("alice".into(), 3)));
        assert!(weight_refused("alice").contains("expected NAME=WEIGHT"));
        assert!(weight_refused("alice=0").contains("from 1 to 100"));
        assert!(weight_refused("alice=101").contains("from 1 to 100"));
        assert!(weight_refused("=2").contains("empty"));
    }
}
