//! Validated names and keys: database and table names, row keys and values, each a type that
//! can only hold what the documented limits allow (see `schema/service.capnp`).
//!
//! Names are shown to people (`ls`, member lists), so they refuse what can make one name
//! look like another: control characters, and Unicode's hidden ones ([`hidden_char`]: format
//! characters such as bidi overrides and zero-width joiners, line and paragraph separators).
//! Keys are data: they take hidden characters, and the CLI escapes them when it prints
//! (`cli::output::shown`), as it escapes names that arrive from older builds.

use crate::error::{Error, Result};

/// Longest database or table name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Longest row key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Largest row value, in bytes. Larger data belongs in blobs.
pub const MAX_VALUE_BYTES: usize = 4 << 20;
/// Most operations in one atomic batch.
pub const MAX_BATCH_OPS: usize = 10_000;
/// Most bytes in one atomic batch: the sum, over its operations, of the table name, the key
/// and the value (10 MiB, two of the largest values and more; FoundationDB caps a transaction
/// at 10 MB). A batch travels whole in one sync page, so every node applies it in one commit;
/// this limit is what keeps that page within one message (`paging::DATA`).
pub const MAX_BATCH_BYTES: usize = 10 << 20;

/// A row as messages name it: `key "K" in table "T"` (quoted, escaped as Rust strings), as
/// the CLI's own lines say it (`stored K in table T of database DB`), so no message writes a
/// row as `T:K`, which reads as a HOST:PORT or a prefix.
pub fn row_text(table: &str, row: &str) -> String {
    format!("key {row:?} in table {table:?}")
}

/// A database name: 1 to [`MAX_NAME_BYTES`] bytes of UTF-8 without control or hidden
/// characters ([`hidden_char`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DbName(String);

/// A table name, under the same rules as [`DbName`], and without `/`: a scope
/// (`TABLE/PREFIX`) ends its table at the first `/`, so no scope could name such a table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableName(String);

/// A row key: 1 to [`MAX_KEY_BYTES`] bytes of UTF-8 without control characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RowKey(String);

/// A row-key prefix for scans: like [`RowKey`] but may be empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPrefix(String);

impl DbName {
    /// `InvalidArgument:` for an empty or over-long name, or one with a control or hidden
    /// character.
    pub fn parse(name: &str) -> Result<Self> {
        check_name("database name", name)?;
        Ok(DbName(name.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TableName {
    /// `InvalidArgument:` as [`DbName::parse`], and for a name holding `/`. The app API,
    /// records and knowledge from peers, the config's scopes and the CLI all check here.
    pub fn parse(name: &str) -> Result<Self> {
        check_name("table name", name)?;
        if name.contains('/') {
            return Err(Error::invalid(format!(
                "table name {name:?} holds '/', which table names cannot: a scope \
                 TABLE/PREFIX ends its table at the first '/' (name it e.g. {:?})",
                name.replace('/', "-")
            )));
        }
        Ok(TableName(name.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl RowKey {
    pub fn parse(key: &str) -> Result<Self> {
        check_text("row key", key, 1, MAX_KEY_BYTES).map(|()| RowKey(key.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl KeyPrefix {
    pub fn parse(prefix: &str) -> Result<Self> {
        check_text("key prefix", prefix, 0, MAX_KEY_BYTES).map(|()| KeyPrefix(prefix.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks a value against [`MAX_VALUE_BYTES`].
pub fn check_value(value: &[u8]) -> Result<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(Error::invalid(format!(
            "value of {} bytes is over the limit of {MAX_VALUE_BYTES} bytes (4 MiB) a row holds; \
             split it into rows of at most 4 MiB each (KEY/0, KEY/1, ...) and read them back \
             with `scan` of KEY/",
            value.len()
        )));
    }
    Ok(())
}

/// Checks an atomic batch of `ops` operations carrying `bytes` bytes of table names, keys and
/// values against [`MAX_BATCH_OPS`] and [`MAX_BATCH_BYTES`].
pub fn check_batch(ops: usize, bytes: usize) -> Result<()> {
    if ops > MAX_BATCH_OPS {
        return Err(Error::invalid(format!(
            "batch of {ops} operations is over the limit of {MAX_BATCH_OPS} operations"
        )));
    }
    if bytes > MAX_BATCH_BYTES {
        return Err(Error::invalid(format!(
            "batch of {bytes} bytes (table names, keys and values) is over the limit of \
             {MAX_BATCH_BYTES} bytes per batch (MAX_BATCH_BYTES); commit it as several batches"
        )));
    }
    Ok(())
}

/// The first character of `text` that Unicode hides or that moves other text: a format
/// character (general category Cf: bidi overrides and isolates such as U+202E, zero-width
/// space, joiners and marks, the byte-order mark, soft hyphen) or a line or paragraph
/// separator (Zl U+2028, Zp U+2029). Shown raw, such a character can make one name read as
/// another, or break a line where none is.
pub fn hidden_char(text: &str) -> Option<char> {
    text.chars().find(|c| is_hidden(*c))
}

/// Whether `c` is one [`hidden_char`] looks for.
pub fn is_hidden(c: char) -> bool {
    use unicode_general_category::{GeneralCategory, get_general_category};
    matches!(
        get_general_category(c),
        GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

/// The rules of a database or table name: [`check_text`]'s, and no hidden character.
fn check_name(what: &str, name: &str) -> Result<()> {
    check_text(what, name, 1, MAX_NAME_BYTES)?;
    if let Some(c) = hidden_char(name) {
        return Err(Error::invalid(format!(
            "{what} {name:?} contains the invisible character U+{:04X}: names refuse Unicode \
             format characters (bidi controls, zero-width ones) and line or paragraph \
             separators, so that no name can pass for another",
            u32::from(c)
        )));
    }
    Ok(())
}

fn check_text(what: &str, text: &str, min: usize, max: usize) -> Result<()> {
    if text.len() < min {
        return Err(Error::invalid(format!("{what} {text:?} is empty")));
    }
    if text.len() > max {
        let shown: String = text.chars().take(32).collect();
        return Err(Error::invalid(format!(
            "{what} \"{shown}...\" is {} bytes, over the limit of {max}",
            text.len()
        )));
    }
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(Error::invalid(format!(
            "{what} {text:?} contains the control character {c:?}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_named_by_key_and_table_never_as_table_colon_key() {
        assert_eq!(row_text("t", "k"), "key \"k\" in table \"t\"");
        assert_eq!(row_text("a:b", "c d"), "key \"c d\" in table \"a:b\"");
    }

    fn rejected(result: Result<impl std::fmt::Debug>) -> String {
        let error = result.expect_err("should be rejected");
        assert_eq!(error.id(), "InvalidArgument");
        error.to_string()
    }

    #[test]
    fn names_accept_ordinary_text() {
        assert_eq!(DbName::parse("photos").unwrap().as_str(), "photos");
        assert_eq!(
            TableName::parse("ünïcode-ok_1").unwrap().as_str(),
            "ünïcode-ok_1"
        );
        assert_eq!(
            RowKey::parse(&"k".repeat(MAX_KEY_BYTES))
                .unwrap()
                .as_str()
                .len(),
            256
        );
        assert_eq!(KeyPrefix::parse("").unwrap().as_str(), "");
    }

    #[test]
    fn names_reject_empty_long_and_control_characters() {
        assert!(rejected(DbName::parse("")).contains("empty"));
        assert!(rejected(TableName::parse(&"t".repeat(65))).contains("over the limit of 64"));
        assert!(rejected(DbName::parse("a\nb")).contains("control character"));
        assert!(rejected(RowKey::parse("")).contains("row key"));
        assert!(rejected(RowKey::parse(&"k".repeat(257))).contains("257 bytes"));
        assert!(rejected(KeyPrefix::parse("\u{7f}")).contains("control character"));
    }

    #[test]
    fn table_names_refuse_a_slash_naming_the_scope_rule() {
        let message = rejected(TableName::parse("t/x"));
        assert!(message.contains("table names cannot"), "{message}");
        assert!(message.contains("TABLE/PREFIX"), "{message}");
        assert!(
            DbName::parse("a/b").is_ok(),
            "database names are not scoped"
        );
    }

    #[test]
    fn names_refuse_format_characters_and_separators_but_keys_take_them() {
        for hidden in [
            "\u{202e}", "\u{200b}", "\u{200d}", "\u{2066}", "\u{feff}", "\u{ad}",
        ] {
            let name = format!("db{hidden}x");
            let message = rejected(DbName::parse(&name));
            assert!(message.contains("invisible character U+"), "{message}");
            assert!(TableName::parse(&name).is_err(), "{name:?}");
            assert!(RowKey::parse(&name).is_ok(), "keys are data: {name:?}");
        }
        for separator in ["\u{2028}", "\u{2029}"] {
            assert!(rejected(DbName::parse(&format!("a{separator}b"))).contains("U+202"));
        }
        for visible in ["日本", "café", "ü-1", "emoji\u{1f600}", "a b"] {
            assert!(DbName::parse(visible).is_ok(), "{visible:?}");
            assert_eq!(hidden_char(visible), None);
        }
    }

    #[test]
    fn values_over_the_limit_are_rejected() {
        assert!(check_value(&vec![0; MAX_VALUE_BYTES]).is_ok());
        let message = rejected(check_value(&vec![0; MAX_VALUE_BYTES + 1]));
        assert!(
            message.contains("4 MiB") && message.contains("split"),
            "{message}"
        );
        assert!(!message.contains("blob"), "blobs are not built: {message}");
    }

    #[test]
    fn batches_over_the_operation_or_byte_limit_are_rejected_naming_the_limit() {
        assert!(check_batch(MAX_BATCH_OPS, MAX_BATCH_BYTES).is_ok());
        assert!(rejected(check_batch(MAX_BATCH_OPS + 1, 0)).contains("10000 operations"));
        let message = rejected(check_batch(2, MAX_BATCH_BYTES + 1));
        assert!(message.contains("MAX_BATCH_BYTES"), "{message}");
        assert!(message.contains(&MAX_BATCH_BYTES.to_string()), "{message}");
    }
}
