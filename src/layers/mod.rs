//! The range-query middleware, one module per layer. Layers never import each other,
//! `server` or `config`; `crate::stack` composes them.

pub mod cache;
pub mod encode;
pub mod plan;
pub mod retry;
pub mod split;
pub mod step_align;
pub mod validate;
