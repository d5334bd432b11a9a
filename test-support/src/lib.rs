//! What the crates' tests share and the product never ships (a dev-dependency only):
//!
//! - [`template`]: `template.yaml` as AWS deploys it, translated by the SAM translator.
//! - [`grants`]: the AWS requests a function really sends, recorded by an SDK interceptor, and
//!   checked against the role the template gives that function, so a role that lacks a grant
//!   fails a test here instead of a deployment with `AccessDeniedException`.
//! - [`kinesis`]: what is on a command stream, read from its start.

pub mod grants;
pub mod kinesis;
pub mod template;
