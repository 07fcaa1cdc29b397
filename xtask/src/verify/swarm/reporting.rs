//! The report: the compose engine's, with the engine and its endpoint
//! mode added (JSON field, JUnit suite properties).

use super::*;

pub(super) fn write_report(
    run: &Run,
    o: &Opts,
    cells: &[Cell],
    data: &[datalayer::DataCell],
    detected: &Detected,
) -> Result<Exit, Error> {
    write_report_placed(run, o, cells, data, detected, None)
}

/// The report; on a multi-node cluster with each service's node (JSON:
/// `source_node` and `target_node` on every cell, `nodes` on the engine).
pub(super) fn write_report_placed(
    run: &Run,
    o: &Opts,
    cells: &[Cell],
    data: &[datalayer::DataCell],
    detected: &Detected,
    placement: Option<&BTreeMap<String, String>>,
) -> Result<Exit, Error> {
    let failed = cells.iter().filter(|c| !c.matches()).count()
        + data.iter().filter(|c| !c.matches()).count();
    if o.format == Format::Json {
        let mut v: serde_json::Value =
            serde_json::from_str(&report::render_json(&run.id, cells, data))
                .map_err(|e| Diagnostic::error(format!("the JSON report: {e}")))?;
        v["engine"] = serde_json::json!({"name": "swarm", "endpoint_mode": detected.mode.as_str(), "why": detected.why});
        if let Some(p) = placement {
            v["engine"]["nodes"] = serde_json::json!(p);
            if let Some(cs) = v["cells"].as_array_mut() {
                for c in cs {
                    for (k, node) in [("source", "source_node"), ("target", "target_node")] {
                        let n = c[k].as_str().and_then(|s| p.get(s)).cloned();
                        c[node] = serde_json::json!(n);
                    }
                }
            }
        }
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print!("{}", report::render_matrix(cells));
        print!("{}", datalayer::render_text(data));
        println!("{}", detected.line());
        if let Some(p) = placement {
            let l: Vec<String> = p.iter().map(|(s, n)| format!("{s} on {n}")).collect();
            println!("placement: {}", l.join(", "));
        }
    }
    if let Some(j) = &o.junit {
        std::fs::write(
            j,
            junit_with_engine(&report::render_junit(cells, data), detected),
        )
        .map_err(|e| {
            Diagnostic::error(format!("writing the JUnit report: {e}"))
                .at_path(j)
                .fix("give --junit a path in a folder you can write")
        })?;
    }
    eprintln!(
        "verify: {} probe(s) ({} data-layer), {} mismatch(es)",
        cells.len() + data.len(),
        data.len(),
        failed
    );
    Ok(Exit::findings_unless(failed == 0))
}

/// The JUnit report with the engine and endpoint mode as suite properties.
pub(super) fn junit_with_engine(xml: &str, detected: &Detected) -> String {
    let esc = super::matrix::xml;
    let props = format!(
        "  <properties>\n    <property name=\"engine\" value=\"swarm\"/>\n    <property name=\"endpoint_mode\" value=\"{}\"/>\n    <property name=\"endpoint_mode_why\" value=\"{}\"/>\n  </properties>\n",
        detected.mode.as_str(),
        esc(&detected.why)
    );
    match xml
        .find("<testsuite ")
        .and_then(|i| xml[i..].find('\n').map(|j| i + j + 1))
    {
        Some(at) => format!("{}{props}{}", &xml[..at], &xml[at..]),
        None => xml.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junit_carries_the_endpoint_mode() {
        let x = "<?xml version=\"1.0\"?>\n<testsuite name=\"verify\" tests=\"0\" failures=\"0\">\n</testsuite>\n";
        let out = junit_with_engine(
            x,
            &Detected {
                mode: Mode::Dnsrr,
                why: "a <b> & \"c\"".into(),
            },
        );
        assert!(
            out.contains("<testsuite name=\"verify\" tests=\"0\" failures=\"0\">\n  <properties>"),
            "{out}"
        );
        assert!(
            out.contains("value=\"dnsrr\"") && out.contains("a &lt;b&gt; &amp; &quot;c&quot;"),
            "{out}"
        );
        assert!(out.ends_with("</properties>\n</testsuite>\n"), "{out}");
    }

    #[test]
    fn nginx_publishes_on_the_node_and_others_publish_nothing() {
        let svc = |name: &str| Service {
            name: name.into(),
            ..Default::default()
        };
        let e = endpoint(&svc("nginx"), Mode::Dnsrr);
        assert_eq!(e.mode, Some(EndpointSpecModeEnum::DNSRR));
        let p = &e.ports.unwrap()[0];
        assert_eq!(
            (p.target_port, p.publish_mode, p.published_port),
            (
                Some(443),
                Some(EndpointPortConfigPublishModeEnum::HOST),
                None
            )
        );
        assert!(endpoint(&svc("accounts"), Mode::Vip).ports.is_none());
    }
}
