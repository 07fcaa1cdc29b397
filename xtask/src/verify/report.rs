//! The verify report: the matrix as text, JSON and JUnit.

use super::datalayer::{self, DataCell};
use super::matrix::{xml, Cell, Outcome};

pub fn render_matrix(cells: &[Cell]) -> String {
    let color = std::env::var_os("NO_COLOR").is_none() && unsafe { libc::isatty(1) } == 1;
    let mut sources: Vec<&str> = vec![];
    let mut targets: Vec<&str> = vec![];
    for c in cells.iter().filter(|c| c.source != "host") {
        if !sources.contains(&c.source.as_str()) {
            sources.push(&c.source);
        }
        if !targets.contains(&c.target.as_str()) {
            targets.push(&c.target);
        }
    }
    let w0 = sources.iter().map(|s| s.len()).max().unwrap_or(6).max(6);
    let wc = targets.iter().map(|s| s.len()).max().unwrap_or(8).max(16);
    let n_paths = cells.iter().filter(|c| !c.via.is_empty()).count();
    let mut out = format!("\nreachability (expected/actual by name; `reach` = must connect and speak the protocol, `block` = must not connect; LEAK = another path disagreed: {n_paths} paths by address and through the host were tried, failures below)\n{:w0$}", "source");
    for t in &targets {
        out += &format!("  {t:wc$}");
    }
    out += "\n";
    for s in &sources {
        out += &format!("{s:w0$}");
        for t in &targets {
            let pair = |c: &&Cell| c.source == *s && c.target == *t;
            let paths_ok = cells.iter().filter(pair).all(|c| c.matches());
            let txt = match cells.iter().filter(pair).find(|c| c.via.is_empty()) {
                None => "-".to_string(),
                Some(c) => {
                    let want = if c.expected { "reach" } else { "block" };
                    let got = match c.outcome {
                        Outcome::Ok => "reach",
                        Outcome::Failed => "error",
                        _ => "block",
                    };
                    if c.matches() && paths_ok {
                        format!("{want}/{got} ok")
                    } else if c.matches() {
                        format!("{want}/{got} LEAK")
                    } else {
                        format!("{want}/{got} FAIL")
                    }
                }
            };
            let padded = format!("{txt:wc$}");
            let bad = txt.ends_with("FAIL") || txt.ends_with("LEAK");
            out += &format!(
                "  {}",
                if bad && color {
                    format!("\x1b[1;31m{padded}\x1b[0m")
                } else {
                    padded
                }
            );
        }
        out += "\n";
    }
    for c in cells.iter().filter(|c| c.source == "host") {
        out += &format!(
            "host -> {} via https: {}\n",
            c.target,
            if c.matches() { "ok" } else { "FAIL" }
        );
    }
    let failed: Vec<&Cell> = cells.iter().filter(|c| !c.matches()).collect();
    if !failed.is_empty() {
        out += "\nfailures:\n";
        for c in failed {
            out += &format!(
                "- {} -> {}:{}{} expected {}, got {}: {}\n",
                c.source,
                c.target,
                c.port,
                c.via_suffix(),
                if c.expected {
                    "reachable"
                } else {
                    "unreachable"
                },
                c.outcome,
                c.detail
            );
            if let Some(h) = &c.hint {
                out += &format!("  fix: {h}\n");
            }
            for (who, l) in &c.logs {
                out += &format!("  last log lines of {who}:\n");
                for line in l.lines() {
                    out += &format!("    {line}\n");
                }
            }
        }
    }
    out
}

/// `cells` are the network cells (`kind: "network"`), `data_cells` the
/// data-layer ones (`kind: "datalayer"`); `ok` covers both.
pub fn render_json(run: &str, cells: &[Cell], data: &[DataCell]) -> String {
    let v: Vec<serde_json::Value> = cells
        .iter()
        .map(|c| {
            serde_json::json!({
                "kind": "network", "source": c.source, "target": c.target, "port": c.port,
                "via": if c.via.is_empty() { "name" } else { c.via.as_str() },
                "expected": if c.expected { "reachable" } else { "unreachable" },
                "outcome": c.outcome.as_str(), "ok": c.matches(), "detail": c.detail, "hint": c.hint,
                "logs": c.logs.iter().map(|(w, l)| serde_json::json!({"container": w, "lines": l})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let ok = cells.iter().all(|c| c.matches()) && data.iter().all(|c| c.matches());
    let d: Vec<serde_json::Value> = data.iter().map(datalayer::to_json).collect();
    serde_json::to_string_pretty(
        &serde_json::json!({"run": run, "ok": ok, "cells": v, "data_cells": d}),
    )
    .unwrap()
}

pub fn render_junit(cells: &[Cell], data: &[DataCell]) -> String {
    let failures = cells.iter().filter(|c| !c.matches()).count()
        + data.iter().filter(|c| !c.matches()).count();
    let mut s = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"verify\" tests=\"{}\" failures=\"{failures}\">\n", cells.len() + data.len());
    for c in cells {
        let name = format!(
            "{} -> {}:{}{} ({})",
            c.source,
            c.target,
            c.port,
            c.via_suffix(),
            if c.expected {
                "reachable"
            } else {
                "unreachable"
            }
        );
        s += &format!(
            "  <testcase classname=\"reachability.{}\" name=\"{}\"",
            xml(&c.source),
            xml(&name)
        );
        if c.matches() {
            s += "/>\n";
        } else {
            s += &format!(
                ">\n    <failure message=\"{}\">{}</failure>\n  </testcase>\n",
                xml(&format!("got {}", c.outcome)),
                xml(&format!(
                    "{}\n{}",
                    c.detail,
                    c.hint.clone().unwrap_or_default()
                ))
            );
        }
    }
    s += &datalayer::junit_cases(data);
    s + "</testsuite>\n"
}

/// Indents a block of log lines under a message.
pub fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("      {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
