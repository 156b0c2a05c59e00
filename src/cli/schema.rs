//! `strata schema`: prints the JSON Schema of the spec file, for yaml-language-server.

use super::EXIT_OK;

/// Prints the schema as pretty JSON.
pub fn run() -> u8 {
    println!("{}", crate::spec::schema_text());
    EXIT_OK
}
