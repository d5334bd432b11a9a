//! No code: depending on this crate turns on, in every Lambda function's build, the features of
//! the dependencies the functions share (see `Cargo.toml`), so `sam build` compiles each of them
//! once, not once per feature set.
