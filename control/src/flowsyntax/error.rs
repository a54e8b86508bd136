//! Errors of the flow language: every message names the offending token,
//! its 1-based column (a character offset in the input line) and why it
//! was refused, so an operator can fix a rule without reading the parser.

use thiserror::Error;

/// Why a rule, match, action list or group string was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FlowSyntaxError {
    /// A name that is no field (or attribute) of the match syntax.
    #[error("unknown field \"{name}\" at column {column}{}", suggest(suggestion))]
    UnknownField {
        /// The unknown name as written.
        name: String,
        /// 1-based column of the name.
        column: usize,
        /// The closest known name, when one is close.
        suggestion: Option<String>,
    },
    /// A value that does not parse for its field or action.
    #[error("invalid value \"{value}\" for {field} at column {column}: {reason}")]
    InvalidValue {
        /// The value as written.
        value: String,
        /// Field, attribute or action it was given to.
        field: String,
        /// 1-based column of the value.
        column: usize,
        /// Why it is invalid.
        reason: String,
    },
    /// A number that parses but lies outside what the field can hold.
    #[error("value \"{value}\" for {field} at column {column} is out of range (maximum {max})")]
    OutOfRange {
        /// The value as written.
        value: String,
        /// Field, attribute or action it was given to.
        field: String,
        /// 1-based column of the value.
        column: usize,
        /// Largest accepted value.
        max: String,
    },
    /// A mask given to a field that can only be matched exactly.
    #[error("field {field} at column {column} does not take a mask")]
    MaskNotAllowed {
        /// The field.
        field: String,
        /// 1-based column of the mask.
        column: usize,
    },
    /// A field used without the protocol match it depends on.
    #[error("field {field} at column {column} requires {prerequisite}")]
    MissingPrerequisite {
        /// The field.
        field: String,
        /// 1-based column of the field.
        column: usize,
        /// What the rule must also match, e.g. `tcp, udp or sctp (nw_proto=6, 17 or 132)`.
        prerequisite: String,
    },
    /// The same field (or attribute) given twice.
    #[error("duplicate field {field} at column {column} (first given at column {first_column})")]
    DuplicateField {
        /// The field.
        field: String,
        /// 1-based column of the repetition.
        column: usize,
        /// 1-based column of the first occurrence.
        first_column: usize,
    },
    /// Two fields that set the same header bits to different values
    /// (e.g. `tcp,nw_proto=17`).
    #[error("{field} at column {column} contradicts {other} at column {other_column}")]
    ConflictingField {
        /// The later field.
        field: String,
        /// 1-based column of the later field.
        column: usize,
        /// The earlier field it contradicts.
        other: String,
        /// 1-based column of the earlier field.
        other_column: usize,
    },
    /// A port name the resolver does not know.
    #[error("unknown port \"{name}\" at column {column}")]
    UnknownPort {
        /// The name as written.
        name: String,
        /// 1-based column of the name.
        column: usize,
    },
    /// A name that is no action.
    #[error("unknown action \"{name}\" at column {column}{}", suggest(suggestion))]
    UnknownAction {
        /// The unknown action as written.
        name: String,
        /// 1-based column of the action.
        column: usize,
        /// The closest known action, when one is close.
        suggestion: Option<String>,
    },
    /// An action that exists but is used wrongly (position, argument).
    #[error("action {action} at column {column}: {reason}")]
    InvalidAction {
        /// The action as written.
        action: String,
        /// 1-based column of the action.
        column: usize,
        /// Why it is refused.
        reason: String,
    },
    /// A form the switch does not implement (e.g. `resubmit(P,T)` with a port).
    #[error("{what} at column {column} is not supported: {reason}")]
    Unsupported {
        /// The construct as written.
        what: String,
        /// 1-based column.
        column: usize,
        /// Why, and what to use instead.
        reason: String,
    },
    /// A rule without an `actions=` part.
    #[error("rule has no \"actions=\" (expected at column {column})")]
    MissingActions {
        /// 1-based column just past the end of the input.
        column: usize,
    },
    /// A rule attribute or `actions=` where only a match is accepted.
    #[error("\"{name}\" at column {column} is not allowed in a match")]
    NotAllowedInMatch {
        /// The attribute as written.
        name: String,
        /// 1-based column.
        column: usize,
    },
    /// A required part of a group (`group_id=`, `type=`) is missing.
    #[error("group has no \"{name}=\" (expected before column {column})")]
    MissingGroupAttribute {
        /// The missing attribute.
        name: &'static str,
        /// 1-based column just past the end of the input.
        column: usize,
    },
    /// Lexical trouble: unbalanced parentheses, an empty name, and the like.
    #[error("syntax error at column {column}: {reason}")]
    Syntax {
        /// 1-based column.
        column: usize,
        /// What is wrong.
        reason: String,
    },
}

fn suggest(s: &Option<String>) -> String {
    match s {
        Some(s) => format!("; did you mean {s}?"),
        None => String::new(),
    }
}

impl FlowSyntaxError {
    /// 1-based column the error points at.
    pub fn column(&self) -> usize {
        match self {
            FlowSyntaxError::UnknownField { column, .. }
            | FlowSyntaxError::InvalidValue { column, .. }
            | FlowSyntaxError::OutOfRange { column, .. }
            | FlowSyntaxError::MaskNotAllowed { column, .. }
            | FlowSyntaxError::MissingPrerequisite { column, .. }
            | FlowSyntaxError::DuplicateField { column, .. }
            | FlowSyntaxError::ConflictingField { column, .. }
            | FlowSyntaxError::UnknownPort { column, .. }
            | FlowSyntaxError::UnknownAction { column, .. }
            | FlowSyntaxError::InvalidAction { column, .. }
            | FlowSyntaxError::Unsupported { column, .. }
            | FlowSyntaxError::MissingActions { column }
            | FlowSyntaxError::NotAllowedInMatch { column, .. }
            | FlowSyntaxError::MissingGroupAttribute { column, .. }
            | FlowSyntaxError::Syntax { column, .. } => *column,
        }
    }
}

/// A flows file (one rule a line) that holds an invalid rule.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("flows file: invalid rule on line {line}")]
pub struct FlowsFileError {
    /// 1-based line number of the invalid rule.
    pub line: usize,
    /// What is wrong with it (its column counts within that line).
    #[source]
    pub error: FlowSyntaxError,
}
