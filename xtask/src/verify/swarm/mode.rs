//! Endpoint mode detection: a virtual IP where the kernel balances one
//! (IPVS), DNS round robin otherwise.

use super::*;

/// Tries a virtual IP on a throwaway service (an image that needs no build,
/// so this overlaps the builds): the probe, on the same overlay, first waits
/// for the task address (`tasks.<service>`) to answer, then connects once
/// through the service name, which resolves to the VIP. VIP if that answers,
/// dnsrr otherwise. A stack without such an image uses dnsrr, which works
/// on every swarm.
pub(super) async fn detect_mode(
    repo: &Repo,
    run: &Run,
    order: &[&Service],
    images: &HashMap<String, String>,
    probe_image: &str,
) -> Detected {
    let t = Instant::now();
    let prebuilt: Vec<(&Service, Target)> = order
        .iter()
        .filter(|s| s.build.is_none())
        .filter_map(|s| Some((*s, matrix::target(repo, s)?)))
        .collect();
    let Some((s, target)) = prebuilt
        .iter()
        .find(|(_, t)| t.kind == Kind::Redis)
        .or(prebuilt.first())
    else {
        return Detected {
            mode: Mode::Dnsrr,
            why: "no service without a build to test a virtual IP with; dnsrr works on every swarm"
                .into(),
        };
    };
    let r = try_vip(repo, run, s, target, &images[&s.name], probe_image).await;
    let secs = t.elapsed().as_secs_f64();
    match r {
        Ok(()) => Detected { mode: Mode::Vip, why: format!("detected in {secs:.1}s: a test service answered on its virtual IP") },
        Err((true, detail)) => Detected {
            mode: Mode::Dnsrr,
            why: format!("detected in {secs:.1}s: a test service answered on its task address but not on its virtual IP ({detail}); this node has no service load balancer (IPVS)"),
        },
        Err((false, detail)) => Detected { mode: Mode::Dnsrr, why: format!("the VIP test did not get as far as its task ({detail}); dnsrr works on every swarm") },
    }
}

/// Ok when the VIP answered; Err((task answered, detail)) otherwise.
pub(super) async fn try_vip(
    repo: &Repo,
    run: &Run,
    s: &Service,
    target: &Target,
    image: &str,
    probe_image: &str,
) -> Result<(), (bool, String)> {
    let d = &run.d;
    let (net, name) = (run.name("vipcheck"), run.name("vipcheck"));
    create_overlay(d, &net, run.labels())
        .await
        .map_err(|e| (false, e.message.clone()))?;
    let image_id = local_image_id(d, image, &s.name)
        .await
        .map_err(|e| (false, e.message.clone()))?;
    let attach = vec![NetworkAttachmentConfig {
        target: Some(net.clone()),
        aliases: Some(vec!["vipcheck".into()]),
        ..Default::default()
    }];
    let task = task_spec(run, s, image_id, env_vars(repo, s), attach);
    let spec = service_spec(
        run,
        name.clone(),
        "vipcheck",
        task,
        EndpointSpec {
            mode: Some(EndpointSpecModeEnum::VIP),
            ports: None,
        },
    );
    let sid = d
        .create_service(spec, None)
        .await
        .map_err(|e| (false, format!("creating the test service: {e}")))?
        .id
        .unwrap_or_default();
    let result = async {
        let ids = HashMap::from([(sid.clone(), "vipcheck".to_string())]);
        if let Some((_, Err(e))) = wait_tasks(run, &ids, 60).await.into_iter().next() {
            return Err((false, e));
        }
        let tasks = target.spec("tasks", &format!("tasks.{name}"), &HashMap::new());
        let (code, out) = probe_on(
            run,
            probe_image,
            &net,
            vec!["wait".into(), "60".into(), tasks],
        )
        .await
        .map_err(|e| (false, e))?;
        if code != 0 {
            return Err((
                false,
                format!("its task address did not answer: {}", out.trim()),
            ));
        }
        let vip = target.spec("vip", "vipcheck", &HashMap::new());
        let (code, out) = probe_on(run, probe_image, &net, vec!["check".into(), vip])
            .await
            .map_err(|e| (true, e))?;
        let line: serde_json::Value =
            serde_json::from_str(out.lines().next().unwrap_or("").trim()).unwrap_or_default();
        if code == 0 && line["outcome"] == "ok" {
            Ok(())
        } else {
            Err((
                true,
                format!(
                    "{}: {}",
                    line["outcome"].as_str().unwrap_or("no answer"),
                    line["detail"].as_str().unwrap_or(out.trim())
                ),
            ))
        }
    }
    .await;
    // The network goes with the run's final sweep (it is in use until the task is gone).
    let _ = d.delete_service(&sid).await;
    result
}

/// Runs the probe in a container of its own on `network`; returns its exit
/// code and output. Same confinement as the probes in service namespaces.
pub(super) async fn probe_on(
    run: &Run,
    image: &str,
    network: &str,
    cmd: Vec<String>,
) -> Result<(i64, String), String> {
    let d = &run.d;
    let mut labels = run.labels();
    labels.insert("monorepo.verify.probe".into(), "1".into());
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(cmd),
        labels: Some(labels),
        host_config: Some(HostConfig {
            network_mode: Some(network.to_string()),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let c = d
        .create_container(None::<q::CreateContainerOptions>, body)
        .await
        .map_err(|e| format!("creating the probe: {e}"))?;
    let rm = || {
        d.remove_container(
            &c.id,
            Some(q::RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
    };
    if let Err(e) = d
        .start_container(&c.id, None::<q::StartContainerOptions>)
        .await
    {
        let _ = rm().await;
        return Err(format!("starting the probe: {e}"));
    }
    let start = Instant::now();
    let code = loop {
        let st = d
            .inspect_container(&c.id, None::<q::InspectContainerOptions>)
            .await
            .ok()
            .and_then(|i| i.state)
            .unwrap_or_default();
        if !st.running.unwrap_or(false) {
            break st.exit_code.unwrap_or(-1);
        }
        if start.elapsed() > Duration::from_secs(90) {
            break -1;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    };
    let out = docker::logs(d, &c.id, 100).await;
    let _ = rm().await;
    Ok((code, out))
}
