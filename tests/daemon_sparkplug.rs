//! The daemon as a Sparkplug B edge node (issue "Line integration", item 4), seen by a host
//! application that decodes every payload with the same schema: births for the node and its
//! camera, DDATA whose values match the JSON results, a DCMD threshold that goes through the
//! runtime-threshold path, and the NDEATH will after `kill -9`.

#[path = "common/broker.rs"]
mod broker;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/sparkplug_host.rs"]
mod sparkplug_host;

use std::time::Duration;

use broker::{Broker, Subscriber, TestDir};
use daemon::{config_head, Daemon, SIZE};
use inspectd::sparkplug::payload::{DataType, Metric, Value};
use sparkplug_host::{Host, Msg};

const WAIT: Duration = Duration::from_secs(30);

fn double(msg: &Msg, name: &str) -> Option<f64> {
    msg.payload.metrics.iter().find(|m| m.name.as_deref() == Some(name)).and_then(|m| match m.value {
        Some(Value::DoubleValue(v)) => Some(v),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_births_its_camera_reports_results_takes_commands_and_dies_with_its_will() {
    let dir = TestDir::new("daemon-sparkplug");
    let broker = Broker::start(&dir);
    let node = "sp1";
    let mut host = Host::connect(broker.port).await;
    let mut json = Subscriber::connect(broker.port, &format!("inspectd/{node}/cam/#")).await;
    let head = tokio::task::block_in_place(|| config_head(node, &dir.0, broker.port));
    let config = format!(
        "{head}\n[sparkplug]\ngroup_id = \"line-sp\"\n\n[cameras.cam]\nmodel = \"washer\"\n[cameras.cam.source]\nkind = \"test\"\nfps = 5\nwidth = {SIZE}\nheight = {SIZE}\n"
    );
    let mut daemon = Daemon::start(&dir.0, node, &config);

    let birth = host.expect("NBIRTH", WAIT, |m| m.is("NBIRTH", None)).await;
    let bd_seq = birth.bd_seq();
    let dbirth = host.expect("DBIRTH of cam", WAIT, |m| m.is("DBIRTH", Some("cam"))).await;
    for name in ["verdict", "score", "threshold", "alarm active", "fps", "frames dropped", "health"] {
        assert!(dbirth.names().contains(&name), "{name} missing: {:?}", dbirth.names());
    }

    // DDATA carries what the JSON results say.
    let result = json.expect("a result", WAIT, |m| m.topic.ends_with("/result")).await.json();
    let threshold = result["threshold"].as_f64().expect("threshold");
    let same = |v: Option<f64>| v.is_some_and(|v| (v - threshold).abs() < 1e-4);
    let data = host
        .expect("DDATA with the result's threshold", WAIT, |m| {
            m.is("DDATA", Some("cam")) && same(double(m, "threshold"))
        })
        .await;
    assert!(data.seq().is_some());

    // A DCMD threshold is a runtime threshold: applied, echoed and used by the next results.
    let write = Metric {
        name: Some("threshold".into()),
        datatype: Some(DataType::Double as u32),
        value: Some(Value::DoubleValue(77.0)),
        ..Metric::default()
    };
    host.command(format!("spBv1.0/line-sp/DCMD/{node}/cam"), vec![write]).await;
    let state = json
        .expect("threshold/state set by sparkplug", WAIT, |m| {
            m.topic.ends_with("/threshold/state") && m.json()["runtime"]["set_by"] == "sparkplug"
        })
        .await
        .json();
    assert_eq!(state["threshold"], 77.0);
    json.expect("a result at 77", WAIT, |m| m.topic.ends_with("/result") && m.json()["threshold"] == 77.0)
        .await;
    host.expect("DDATA threshold 77", WAIT, |m| {
        m.is("DDATA", Some("cam")) && double(m, "threshold") == Some(77.0)
    })
    .await;

    // kill -9: no NDEATH of its own, the broker's will carries the birth's bdSeq.
    daemon.signal_and_wait("KILL", WAIT);
    let death = host.expect("NDEATH will", WAIT, |m| m.is("NDEATH", None)).await;
    assert_eq!(death.bd_seq(), bd_seq);

    // A graceful stop drains (nothing holds the decision channel open), then sends NDEATH.
    let mut daemon = Daemon::start(&dir.0, node, &config);
    let birth = host.expect("NBIRTH again", WAIT, |m| m.is("NBIRTH", None)).await;
    host.expect("DBIRTH again", WAIT, |m| m.is("DBIRTH", Some("cam"))).await;
    let stopped = std::time::Instant::now();
    assert_eq!(daemon.signal_and_wait("TERM", WAIT), Some(0), "{}", daemon.log());
    assert!(stopped.elapsed() < Duration::from_secs(4), "stop took {:?}", stopped.elapsed());
    let death = host.expect("NDEATH", WAIT, |m| m.is("NDEATH", None)).await;
    assert_eq!(death.bd_seq(), birth.bd_seq());
}
