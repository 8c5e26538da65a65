//! The GitHub REST API over HTTP.

mod http;

pub use http::{GithubHttp, GithubHttpConfig};
