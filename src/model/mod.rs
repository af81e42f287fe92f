//! Wire and domain types: the typed range query, the response envelope, and the pure
//! time math both rely on. Nothing here does I/O.

pub mod encoded;
pub mod gotime;
pub mod layout;
pub mod merge;
pub mod query;
pub mod ranges;
pub mod response;
pub mod route;
pub mod stats;
pub mod time;
pub mod timeout;

pub use encoded::EncodedAnswer;
pub use query::RangeQuery;
pub use response::{MatrixData, QueryResponse, RawJson, Series, Status};
pub use route::Route;
pub use stats::RequestStats;
