//! Helpers shared by the integration and system tests.
