//! The range-query middleware, one module per layer. Layers never import each other,
//! `server` or `config`; `stack.rs` composes them.

pub mod cache;
pub mod retry;
pub mod split;
pub mod step_align;
pub mod validate;
