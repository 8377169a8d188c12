//! The Management API's analytics endpoints, as the `monitor` phase reads
//! them: the project's request logs (status codes of the API gateway) and the
//! Edge Functions' combined statistics.
//!
//! Two logs endpoints exist: `GET /v1/projects/{ref}/analytics/endpoints/logs`
//! (the newer name) and `.../logs.all` (the one the spec documents). Both take
//! `sql`, `iso_timestamp_start` and `iso_timestamp_end` and answer an
//! `AnalyticsResponse` (`{"result": [...], "error": ...}`); the caller probes
//! the newer one first and falls back on 404 ([`LogsEndpoint`]). A 200 whose
//! `error` is set is a failed query, not an empty result.

use chrono::{DateTime, TimeZone, Utc};
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::{ApiError, ApiErrorKind, ManagementClient};
use crate::http::Api as _;

/// Which logs endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogsEndpoint {
    /// `/analytics/endpoints/logs` (the newer name).
    Logs,
    /// `/analytics/endpoints/logs.all` (the spec's).
    LogsAll,
}

impl LogsEndpoint {
    /// The last path segment, e.g. `logs.all`.
    pub fn name(self) -> &'static str {
        match self {
            LogsEndpoint::Logs => "logs",
            LogsEndpoint::LogsAll => "logs.all",
        }
    }
}

/// The query counting the API gateway's requests and its 5xx answers in the
/// time range of the call (Supabase's logs SQL over `edge_logs`).
pub const EDGE_STATUS_SQL: &str = "select count(*) as requests, countif(response.status_code >= 500) as server_errors from edge_logs cross join unnest(metadata) as m cross join unnest(m.response) as response";

/// The `interval` asked of `functions.combined-stats`: the shortest the spec
/// allows.
pub const FUNCTION_STATS_INTERVAL: &str = "15min";

/// Requests and 5xx answers in a time range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts {
    /// Requests seen.
    pub requests: u64,
    /// Of those, answers with a status of 500 or more.
    pub server_errors: u64,
}

/// One time bucket of a function's combined statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionBucket {
    /// Start of the bucket, when the row carries a readable timestamp.
    pub at: Option<DateTime<Utc>>,
    /// Invocations in the bucket.
    pub requests: u64,
    /// Of those, 5xx answers.
    pub server_errors: u64,
}

#[derive(Deserialize)]
struct AnalyticsResponse {
    #[serde(default)]
    result: Option<Vec<Value>>,
    #[serde(default)]
    error: Option<Value>,
}

fn iso(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl ManagementClient {
    /// Runs `sql` on the project's logs between `start` and `end` through
    /// `endpoint`; the rows of `result`.
    pub async fn query_logs(
        &self,
        project: &str,
        endpoint: LogsEndpoint,
        sql: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<Value>, ApiError> {
        let path = super::project_path(
            project,
            &format!("/analytics/endpoints/{}", endpoint.name()),
        );
        let label = format!("GET {path}");
        let query = [
            ("sql", sql.to_string()),
            ("iso_timestamp_start", iso(start)),
            ("iso_timestamp_end", iso(end)),
        ];
        let answer: AnalyticsResponse = self.query(Method::GET, &path, &query, "").await?;
        self.rows(&label, answer)
    }

    /// `GET .../analytics/endpoints/functions.combined-stats` for one
    /// function over the last [`FUNCTION_STATS_INTERVAL`].
    pub async fn function_stats(
        &self,
        project: &str,
        function_id: &str,
    ) -> Result<Vec<FunctionBucket>, ApiError> {
        let path = super::project_path(project, "/analytics/endpoints/functions.combined-stats");
        let label = format!("GET {path}");
        let query = [
            ("interval", FUNCTION_STATS_INTERVAL),
            ("function_id", function_id),
        ];
        let answer: AnalyticsResponse = self.query(Method::GET, &path, &query, "").await?;
        Ok(self
            .rows(&label, answer)?
            .iter()
            .map(function_bucket)
            .collect())
    }

    fn rows(&self, label: &str, answer: AnalyticsResponse) -> Result<Vec<Value>, ApiError> {
        match answer.error {
            None | Some(Value::Null) => Ok(answer.result.unwrap_or_default()),
            Some(error) => {
                let text = match &error {
                    Value::String(s) => s.clone(),
                    other => other
                        .get("message")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .unwrap_or_else(|| other.to_string()),
                };
                Err(ApiError {
                    endpoint: label.into(),
                    status: Some(200),
                    kind: ApiErrorKind::Refused,
                    message: format!(
                        "the analytics query failed: {}",
                        self.scrub(&text.chars().take(300).collect::<String>())
                    ),
                })
            }
        }
    }
}

/// A number in a row: JSON numbers and numeric strings; negative or missing
/// counts as 0.
fn count_field(row: &Value, names: &[&str]) -> u64 {
    names
        .iter()
        .find_map(|n| row.get(*n))
        .and_then(|v| match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        })
        .filter(|v| v.is_finite() && *v > 0.0)
        .map(|v| v.round() as u64)
        .unwrap_or(0)
}

/// Sums the logs query's rows ([`EDGE_STATUS_SQL`] answers one).
pub fn status_counts(rows: &[Value]) -> StatusCounts {
    rows.iter()
        .fold(StatusCounts::default(), |acc, row| StatusCounts {
            requests: acc.requests + count_field(row, &["requests", "count"]),
            server_errors: acc.server_errors + count_field(row, &["server_errors", "errors"]),
        })
}

/// Reads a bucket of `functions.combined-stats`: `timestamp` (microseconds,
/// milliseconds or seconds since the epoch, or RFC 3339), `requests_count`
/// and `server_err_count`.
pub fn function_bucket(row: &Value) -> FunctionBucket {
    let at = row.get("timestamp").and_then(|v| match v {
        Value::Number(n) => n.as_i64().and_then(epoch),
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .ok()
            .or_else(|| s.trim().parse::<i64>().ok().and_then(epoch)),
        _ => None,
    });
    FunctionBucket {
        at,
        requests: count_field(row, &["requests_count", "count"]),
        server_errors: count_field(row, &["server_err_count", "server_error_count"]),
    }
}

/// A number since the epoch in whichever unit its size says.
fn epoch(n: i64) -> Option<DateTime<Utc>> {
    let micros = if n > 100_000_000_000_000 {
        n
    } else if n > 100_000_000_000 {
        n * 1000
    } else {
        n * 1_000_000
    };
    Utc.timestamp_micros(micros).single()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_read_numbers_and_numeric_strings() {
        let rows = [
            json!({"requests": 120, "server_errors": "3"}),
            json!({"count": 5}),
        ];
        assert_eq!(
            status_counts(&rows),
            StatusCounts {
                requests: 125,
                server_errors: 3
            }
        );
        assert_eq!(status_counts(&[]), StatusCounts::default());
    }

    #[test]
    fn function_buckets_read_every_timestamp_form() {
        let at = Utc.with_ymd_and_hms(2026, 1, 7, 12, 0, 0).unwrap();
        for ts in [
            json!(at.timestamp_micros()),
            json!(at.timestamp_millis()),
            json!(at.timestamp()),
            json!("2026-01-07T12:00:00Z"),
        ] {
            let b = function_bucket(
                &json!({"timestamp": ts, "requests_count": 4, "server_err_count": 1}),
            );
            assert_eq!(b.at, Some(at), "{ts}");
            assert_eq!((b.requests, b.server_errors), (4, 1));
        }
        assert_eq!(function_bucket(&json!({})).at, None);
    }
}
