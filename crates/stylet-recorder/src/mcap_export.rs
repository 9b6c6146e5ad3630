//! A procedure log as MCAP (<https://mcap.dev>), the container robotics tools read (Foxglove,
//! PlotJuggler, the `mcap` CLI and libraries): `stylet replay LOG --mcap FILE`.
//!
//! One channel per kind of record, JSON messages with a JSON Schema: `/procedure/state`,
//! `/procedure/command`, `/procedure/operator`, `/procedure/fault`, `/procedure/note`, and one
//! channel per measurement name, `/sample/NAME` (the tip, the gate's signal, ...), so that each
//! plots as its own series. A message is the record as the log has it (`seq`, `t_s` and the
//! event's fields). Its log and publish times are the procedure time in nanoseconds after the
//! log's wall-clock start (the header's `started_unix_ms`). The header itself is a metadata
//! record named `stylet_procedure_log`; a log cut by a crash says so there (`cut_at_byte`).
//! Chunks are not compressed (every MCAP reader reads them without a codec).

use std::collections::BTreeMap;
use std::io::{Seek, Write};

use serde_json::json;

use crate::{Event, Log, Record};

/// Why the MCAP file could not be written. The doc comment is the message.
#[derive(Debug, docsplay::Display, thiserror::Error)]
pub enum McapError {
    /// writing MCAP: {0}
    Write(#[from] mcap::McapError),
    /// writing MCAP: a record could not be encoded: {0}
    Encode(#[from] serde_json::Error),
    /// writing MCAP: {0}
    Io(#[from] std::io::Error),
}

/// What was written.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct McapStats {
    /// Messages written (one per record).
    pub messages: u64,
    /// Channels (topics) written.
    pub channels: usize,
}

/// The topic a record goes to.
#[must_use]
pub fn topic(event: &Event) -> String {
    match event {
        Event::Sample { name, .. } => format!("/sample/{name}"),
        other => format!("/procedure/{}", other.kind()),
    }
}

/// The JSON Schema of one kind's messages.
fn schema(kind: &str) -> serde_json::Value {
    let string = json!({ "type": "string" });
    let numbers = json!({ "type": "array", "items": { "type": "number" } });
    let fields: &[(&str, &serde_json::Value, &str)] = match kind {
        "command" => &[("name", &string, "the command"), ("values", &numbers, "its values (mm, rad)")],
        "state" => &[
            ("machine", &string, "workflow or supervisor"),
            ("from", &string, "the state left"),
            ("to", &string, "the state entered"),
            ("reason", &string, "why"),
        ],
        "operator" => &[("action", &string, "the action"), ("detail", &string, "its details")],
        "fault" => &[("code", &string, "hazard code (HAZ-n)"), ("detail", &string, "what happened")],
        "sample" => &[("name", &string, "what was measured"), ("values", &numbers, "the values (mm, rad, s)")],
        _ => &[("text", &string, "the note")],
    };
    let mut properties = serde_json::Map::new();
    properties.insert("seq".into(), json!({ "type": "integer", "description": "record number, from 0" }));
    properties.insert("t_s".into(), json!({ "type": "number", "description": "procedure time, s" }));
    properties.insert("kind".into(), json!({ "type": "string", "const": kind }));
    let mut required = vec!["seq", "t_s", "kind"];
    for (name, ty, what) in fields {
        let mut p = (*ty).clone();
        p["description"] = json!(what);
        properties.insert((*name).into(), p);
        required.push(name);
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": format!("stylet.{kind}"),
        "type": "object",
        "properties": properties,
        "required": required,
    })
}

/// Nanoseconds after the Unix epoch of a record at `t_s` (negative procedure times clamp to the start).
fn log_time_ns(started_unix_ms: u64, t_s: f64) -> u64 {
    let after = if t_s.is_finite() && t_s > 0.0 { (t_s * 1e9).round() as u64 } else { 0 };
    started_unix_ms.saturating_mul(1_000_000).saturating_add(after)
}

/// Writes `log` as MCAP to `w`.
///
/// # Errors
/// [`McapError`] when writing fails.
pub fn write_mcap<W: Write + Seek>(log: &Log, w: W) -> Result<McapStats, McapError> {
    let opts = mcap::WriteOptions::new()
        .compression(None)
        .profile("")
        .library(format!("stylet {}", env!("CARGO_PKG_VERSION")));
    let mut out = opts.create(w)?;
    let h = &log.header;
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), h.format.clone());
    meta.insert("version".to_string(), h.version.to_string());
    meta.insert("procedure".to_string(), h.procedure.clone());
    meta.insert("started_unix_ms".to_string(), h.started_unix_ms.to_string());
    meta.insert("records".to_string(), log.records.len().to_string());
    if let Some(c) = &log.cut {
        meta.insert("cut_at_byte".to_string(), c.byte_offset.to_string());
        meta.insert("cut_reason".to_string(), c.reason.clone());
    }
    out.write_metadata(&mcap::records::Metadata { name: "stylet_procedure_log".into(), metadata: meta })?;
    let mut schemas: BTreeMap<&'static str, u16> = BTreeMap::new();
    let mut channels: BTreeMap<String, (u16, u32)> = BTreeMap::new();
    let mut stats = McapStats::default();
    for Record { seq, t_s, event } in &log.records {
        let k = event.kind();
        let schema_id = match schemas.get(k) {
            Some(id) => *id,
            None => {
                let s = serde_json::to_vec(&schema(k))?;
                let id = out.add_schema(&format!("stylet.{k}"), "jsonschema", &s)?;
                schemas.insert(k, id);
                id
            }
        };
        let t = topic(event);
        let (channel_id, sequence) = match channels.get_mut(&t) {
            Some((id, n)) => {
                *n += 1;
                (*id, *n)
            }
            None => {
                let id = out.add_channel(schema_id, &t, "json", &BTreeMap::new())?;
                channels.insert(t, (id, 0));
                (id, 0)
            }
        };
        let mut body = serde_json::to_value(event)?;
        body["seq"] = json!(seq);
        body["t_s"] = json!(t_s);
        let ns = log_time_ns(h.started_unix_ms, *t_s);
        let header = mcap::records::MessageHeader { channel_id, sequence, log_time: ns, publish_time: ns };
        out.write_to_known_channel(&header, &serde_json::to_vec(&body)?)?;
        stats.messages += 1;
    }
    out.finish()?;
    out.into_inner().flush()?;
    stats.channels = channels.len();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_kind_has_a_schema_naming_its_fields() {
        for (k, field) in [
            ("command", "values"),
            ("state", "reason"),
            ("operator", "action"),
            ("fault", "code"),
            ("sample", "name"),
            ("note", "text"),
        ] {
            let s = schema(k);
            assert!(s["properties"][field].is_object(), "{k}: {s}");
            assert!(s["required"].as_array().unwrap().iter().any(|r| r == field), "{k}: {s}");
        }
    }

    #[test]
    fn times_are_nanoseconds_after_the_wall_clock_start() {
        assert_eq!(log_time_ns(1_000, 0.5), 1_000_000_000 + 500_000_000);
        assert_eq!(log_time_ns(1_000, -1.0), 1_000_000_000);
        assert_eq!(log_time_ns(1_000, f64::NAN), 1_000_000_000);
    }

    #[test]
    fn samples_get_a_topic_each() {
        let e = Event::Sample { name: "tip".into(), values: vec![1.0] };
        assert_eq!(topic(&e), "/sample/tip");
        assert_eq!(topic(&Event::Note { text: String::new() }), "/procedure/note");
    }
}
