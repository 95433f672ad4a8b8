//! Alert delivery: the outbox and the destinations (stdout, file, webhook).
//!
//! A raised alert's outbox item (`_seclake/outbox/<alert id>.json`) is committed with the
//! alert and lists the destinations that must receive it. [`deliver_pending`] sends every
//! item to each listed destination; a destination that succeeds is removed from the item, and
//! the item is deleted when none remain. A failure keeps the item (with the error and attempt
//! count) for the next run, so an alert is never dropped silently; a destination named in an
//! item but no longer configured is reported and kept.
//!
//! Webhook URLs carry secrets: errors show only the destination name and the URL's host.

use std::io::Write;
use std::time::Duration;

use serde_json::json;

use super::alert::{Alert, OutboxItem};
use crate::config::{Config, Destination, DestinationKind};
use crate::error::{Error, Result};
use crate::lake::{Lake, paths};

/// What a delivery run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// (alert, destination) pairs delivered now.
    pub delivered: usize,
    /// Alerts still waiting for at least one destination.
    pub pending: usize,
    /// One line per failed delivery.
    pub errors: Vec<String>,
}

fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// An alert as JSON, times in RFC 3339.
pub fn alert_json(a: &Alert) -> serde_json::Value {
    json!({
        "alert_id": a.alert_id,
        "origin": a.origin.as_str(),
        "detection_id": a.detection_id,
        "severity": a.severity.as_str(),
        "title": a.title,
        "dedup": a.dedup,
        "event_count": a.event_count,
        "threshold": a.threshold,
        "first_event_time": rfc3339(a.first_event_time),
        "last_event_time": rfc3339(a.last_event_time),
        "created_at": rfc3339(a.created_at),
        "raised_at": a.raised_at.map(rfc3339),
        "updated_at": rfc3339(a.updated_at),
        "runbook": a.runbook,
        "reference": a.reference,
    })
}

/// The one-line summary chat tools show.
pub fn alert_text(a: &Alert) -> String {
    format!(
        "[{}] {}: {} ({} event{}, first {})",
        a.severity,
        a.detection_id,
        a.title,
        a.event_count,
        if a.event_count == 1 { "" } else { "s" },
        rfc3339(a.first_event_time)
    )
}

/// Send one alert to one destination.
pub async fn send(d: &Destination, a: &Alert, client: &reqwest::Client) -> Result<()> {
    match d.kind {
        DestinationKind::Stdout => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", alert_json(a)).map_err(|e| Error::io("stdout", e))
        }
        DestinationKind::File => {
            let path = d.path.as_ref().expect("validated: file has a path");
            if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| Error::io(path, e))?;
            // One write per line, so concurrent appenders do not interleave within a line.
            let line = format!("{}\n", alert_json(a));
            f.write_all(line.as_bytes()).map_err(|e| Error::io(path, e))
        }
        DestinationKind::Webhook => {
            let url = d.url.as_ref().expect("validated: webhook has a url");
            let mut body = alert_json(a);
            body["text"] = alert_text(a).into();
            let mut last = String::new();
            for attempt in 0..=d.retries {
                if attempt > 0 {
                    let ms = (250u64 << attempt.min(6)).min(8_000);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                let r = client
                    .post(url.expose())
                    .timeout(Duration::from_secs(d.timeout_secs.max(1)))
                    .json(&body)
                    .send()
                    .await;
                match r {
                    Ok(resp) if resp.status().is_success() => return Ok(()),
                    Ok(resp) => last = format!("HTTP {}", resp.status()),
                    Err(e) => last = e.without_url().to_string(),
                }
            }
            Err(Error::invalid(format!(
                "webhook {} ({}): {last} after {} attempt(s)",
                d.name,
                url.redacted(),
                d.retries + 1
            )))
        }
    }
}

/// Deliver every outbox item. Errors reaching the lake fail the call; delivery failures are
/// reported and leave the item pending.
pub async fn deliver_pending(lake: &Lake, config: &Config) -> Result<DeliveryReport> {
    let mut report = DeliveryReport::default();
    let items = lake.list(&paths::outbox_dir()).await?;
    if items.is_empty() {
        return Ok(report);
    }
    let client = reqwest::Client::builder()
        .user_agent(concat!("seclake/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::invalid(format!("HTTP client: {e}")))?;
    let mut metas = items;
    metas.sort_by(|a, b| a.location.cmp(&b.location));
    for meta in metas {
        let Some(body) = lake.get_opt(&meta.location).await? else {
            continue;
        };
        let mut item: OutboxItem = serde_json::from_slice(&body).map_err(|source| Error::Json {
            context: format!("outbox item {}", meta.location),
            source,
        })?;
        let mut left = Vec::new();
        let mut errors = Vec::new();
        for name in &item.destinations {
            let Some(d) = config.destinations.iter().find(|d| &d.name == name) else {
                errors.push(format!(
                    "alert {}: destination {name:?} is not configured; kept pending",
                    item.alert.alert_id
                ));
                left.push(name.clone());
                continue;
            };
            match send(d, &item.alert, &client).await {
                Ok(()) => report.delivered += 1,
                Err(e) => {
                    errors.push(format!("alert {}: {e}", item.alert.alert_id));
                    left.push(name.clone());
                }
            }
        }
        if left.is_empty() {
            lake.delete_opt(&meta.location).await?;
        } else {
            item.destinations = left;
            item.attempts += 1;
            item.last_error = errors.last().cloned();
            let body = serde_json::to_vec_pretty(&item).map_err(|source| Error::Json {
                context: format!("outbox item {}", meta.location),
                source,
            })?;
            lake.put(&meta.location, body).await?;
            report.pending += 1;
        }
        report.errors.extend(errors);
    }
    Ok(report)
}
