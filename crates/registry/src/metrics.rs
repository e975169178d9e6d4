//! Request counters for `GET /metrics` (Prometheus text format), kept without a metrics crate:
//! a map of (method, status) counts and body byte totals (bodies of known length are counted
//! up front, streamed ones chunk by chunk as they pass).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
}

impl Metrics {
    pub fn record_request(&self, method: &str, status: u16) {
        let mut requests = self
            .requests
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        *requests.entry((method.to_owned(), status)).or_default() += 1;
    }

    pub fn add_received(&self, bytes: u64) {
        self.bytes_received.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn add_sent(&self, bytes: u64) {
        self.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        text.push_str(
            "# HELP strata_registry_http_requests_total HTTP requests by method and status.\n",
        );
        text.push_str("# TYPE strata_registry_http_requests_total counter\n");
        let requests = self
            .requests
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        for ((method, status), count) in requests.iter() {
            let _ = writeln!(
                text,
                "strata_registry_http_requests_total{{method=\"{method}\",status=\"{status}\"}} {count}"
            );
        }
        drop(requests);
        for (name, help, value) in [
            (
                "strata_registry_http_request_bytes_total",
                "Request body bytes received.",
                &self.bytes_received,
            ),
            (
                "strata_registry_http_response_bytes_total",
                "Response body bytes sent.",
                &self.bytes_sent,
            ),
        ] {
            let _ = writeln!(
                text,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let metrics = Metrics::default();
        metrics.record_request("GET", 200);
        metrics.record_request("GET", 200);
        metrics.record_request("PUT", 201);
        metrics.add_sent(10);
        metrics.add_sent(5);
        metrics.add_received(7);
        let text = metrics.render();
        assert!(
            text.contains("strata_registry_http_requests_total{method=\"GET\",status=\"200\"} 2\n")
        );
        assert!(
            text.contains("strata_registry_http_requests_total{method=\"PUT\",status=\"201\"} 1\n")
        );
        assert!(text.contains("strata_registry_http_response_bytes_total 15\n"));
        assert!(text.contains("strata_registry_http_request_bytes_total 7\n"));
    }
}
