//! The Sparkplug B edge node against a real mosquitto, as a host application sees it (see
//! common/sparkplug_host.rs: a plain rumqttc client on `spBv1.0/#` decoding every payload with
//! the same prost types). Births, report by exception, rebirth, commands, and both deaths (the will after a
//! dropped connection, the explicit NDEATH of a graceful shutdown), with their bdSeq and seq.

#[path = "common/broker.rs"]
mod broker;
#[path = "common/sparkplug_host.rs"]
mod sparkplug_host;

use std::collections::BTreeMap;
use std::time::Duration;

use broker::{configs, Broker, TestDir};
use inspectd::publish::MqttSettings;
use inspectd::sparkplug::payload::{DataType, Metric, Value, BD_SEQ, REBIRTH};
use inspectd::sparkplug::{
    DeviceValues, SparkplugCommand, SparkplugConfig, SparkplugNode, SparkplugSettings,
};
use rumqttc::QoS;
use sparkplug_host::{Host, Msg, WAIT};
use tokio::sync::{mpsc, watch};

/// The edge node under test with the daemon's side of its channels.
struct Edge {
    node: SparkplugNode,
    values: watch::Sender<BTreeMap<String, DeviceValues>>,
    commands: mpsc::Receiver<SparkplugCommand>,
    group: String,
    id: String,
}

impl Edge {
    fn start(port: u16, name: &str, dir: &TestDir, cameras: &[(&str, DeviceValues)]) -> Edge {
        let (mqtt, node) = configs(port, name, dir);
        let mqtt = MqttSettings::new(&mqtt, &node).expect("mqtt settings");
        let cfg = SparkplugConfig { enabled: true, group_id: format!("line-{name}"), edge_node_id: None };
        let settings = SparkplugSettings::new(&cfg, &node.id, &mqtt).expect("sparkplug settings");
        let cameras: BTreeMap<String, DeviceValues> =
            cameras.iter().map(|(id, v)| (id.to_string(), v.clone())).collect();
        let (values, devices) = watch::channel(cameras);
        let (commands_tx, commands) = mpsc::channel(8);
        let node_handle = SparkplugNode::start(settings, devices, commands_tx);
        Edge { node: node_handle, values, commands, group: cfg.group_id, id: node.id }
    }

    fn ncmd(&self) -> String {
        format!("spBv1.0/{}/NCMD/{}", self.group, self.id)
    }

    fn dcmd(&self, device: &str) -> String {
        format!("spBv1.0/{}/DCMD/{}/{device}", self.group, self.id)
    }

    fn set(&self, camera: &str, change: impl FnOnce(&mut DeviceValues)) {
        self.values.send_modify(|cameras| change(cameras.get_mut(camera).expect("camera exists")));
    }

    async fn command(&mut self) -> SparkplugCommand {
        tokio::time::timeout(WAIT, self.commands.recv())
            .await
            .expect("a command in time")
            .expect("node alive")
    }
}

fn camera(score: f64) -> DeviceValues {
    DeviceValues {
        verdict: "OK".into(),
        score,
        threshold: 5.0,
        alarm_active: false,
        fps: 24.5,
        frames_dropped: 0,
        health: "streaming".into(),
    }
}

fn metric(name: &str, value: Value) -> Metric {
    Metric { name: Some(name.to_string()), value: Some(value), ..Metric::default() }
}

/// NBIRTH, then a DBIRTH per camera (in id order) with seq 0, 1, 2, ...; returns the NBIRTH.
async fn expect_births(host: &mut Host, cameras: &[&str]) -> Msg {
    let nbirth = host.expect("NBIRTH", WAIT, |m| m.is("NBIRTH", None)).await;
    assert_eq!(nbirth.seq(), Some(0), "NBIRTH seq");
    for (i, cam) in cameras.iter().enumerate() {
        let dbirth = host.next(&format!("DBIRTH {cam}")).await;
        assert!(dbirth.is("DBIRTH", Some(cam)), "expected DBIRTH {cam}, got {dbirth:?}");
        assert_eq!(dbirth.seq(), Some(i as u64 + 1), "DBIRTH {cam} seq");
    }
    nbirth
}

/// A DBIRTH declares every metric with its datatype and the value the daemon fed in.
fn assert_birth_matches(dbirth: &Msg, v: &DeviceValues) {
    let expected = [
        ("verdict", DataType::String, Value::StringValue(v.verdict.clone())),
        ("score", DataType::Double, Value::DoubleValue(v.score)),
        ("threshold", DataType::Double, Value::DoubleValue(v.threshold)),
        ("alarm active", DataType::Boolean, Value::BooleanValue(v.alarm_active)),
        ("fps", DataType::Double, Value::DoubleValue(v.fps)),
        ("frames dropped", DataType::UInt64, Value::LongValue(v.frames_dropped)),
        ("health", DataType::String, Value::StringValue(v.health.clone())),
        ("acknowledge", DataType::Boolean, Value::BooleanValue(false)),
    ];
    assert_eq!(dbirth.names(), expected.iter().map(|(name, _, _)| *name).collect::<Vec<_>>());
    for (name, datatype, value) in expected {
        let m = dbirth.metric(name);
        assert_eq!((m.datatype, m.value.as_ref()), (Some(datatype as u32), Some(&value)), "{name}");
        assert!(m.timestamp.is_some_and(|t| t > 1_700_000_000_000), "{name} has a timestamp");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn births_announce_the_node_then_every_camera_with_seq_counting_from_zero() {
    let dir = TestDir::new("sparkplug-birth");
    let broker = Broker::start(&dir);
    let mut host = Host::connect(broker.port).await;
    let (cam1, cam2) = (camera(1.25), DeviceValues { health: "reconnecting".into(), ..camera(0.5) });
    let _edge = Edge::start(broker.port, "birth", &dir, &[("cam1", cam1.clone()), ("cam2", cam2.clone())]);

    let nbirth = host.next("NBIRTH").await;
    assert!(nbirth.is("NBIRTH", None), "the first message is the NBIRTH: {nbirth:?}");
    assert_eq!((nbirth.qos, nbirth.retain), (QoS::AtMostOnce, false));
    assert_eq!((nbirth.seq(), nbirth.bd_seq()), (Some(0), 0));
    let rebirth = nbirth.metric(REBIRTH);
    assert_eq!(rebirth.datatype, Some(DataType::Boolean as u32));
    assert_eq!(rebirth.value, Some(Value::BooleanValue(false)));
    assert!(nbirth.payload.timestamp.is_some());

    for (seq, (id, values)) in [("cam1", &cam1), ("cam2", &cam2)].into_iter().enumerate() {
        let dbirth = host.next(&format!("DBIRTH {id}")).await;
        assert!(dbirth.is("DBIRTH", Some(id)), "{dbirth:?}");
        assert_eq!((dbirth.qos, dbirth.retain, dbirth.seq()), (QoS::AtMostOnce, false, Some(seq as u64 + 1)));
        assert_birth_matches(&dbirth, values);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddata_carries_exactly_the_changed_metrics_and_cameras_come_and_go() {
    let dir = TestDir::new("sparkplug-ddata");
    let broker = Broker::start(&dir);
    let mut host = Host::connect(broker.port).await;
    let edge = Edge::start(broker.port, "ddata", &dir, &[("cam1", camera(1.0)), ("cam2", camera(2.0))]);
    expect_births(&mut host, &["cam1", "cam2"]).await;

    edge.set("cam1", |v| {
        v.verdict = "NG".into();
        v.score = 7.5;
        v.alarm_active = true;
    });
    let ddata = host.next("DDATA cam1").await;
    assert!(ddata.is("DDATA", Some("cam1")), "{ddata:?}");
    assert_eq!((ddata.qos, ddata.retain, ddata.seq()), (QoS::AtMostOnce, false, Some(3)));
    assert_eq!(ddata.names(), ["verdict", "score", "alarm active"], "only what changed");
    assert_eq!(ddata.metric("verdict").value, Some(Value::StringValue("NG".into())));
    assert_eq!(ddata.metric("score").value, Some(Value::DoubleValue(7.5)));
    assert_eq!(ddata.metric("alarm active").value, Some(Value::BooleanValue(true)));
    assert!(ddata.payload.metrics.iter().all(|m| m.timestamp.is_some()));

    // cam2 goes, cam3 comes: a DDEATH and a DBIRTH, counting on.
    edge.values.send_modify(|cameras| {
        cameras.remove("cam2");
        cameras.insert("cam3".into(), camera(3.0));
    });
    let ddeath = host.next("DDEATH cam2").await;
    assert!(ddeath.is("DDEATH", Some("cam2")) && ddeath.seq() == Some(4), "{ddeath:?}");
    let dbirth = host.next("DBIRTH cam3").await;
    assert!(dbirth.is("DBIRTH", Some("cam3")) && dbirth.seq() == Some(5), "{dbirth:?}");
    assert_birth_matches(&dbirth, &camera(3.0));

    // Unchanged cameras send nothing: the next message is the one change below.
    edge.set("cam3", |v| v.frames_dropped = 12);
    let ddata = host.next("DDATA cam3").await;
    assert!(ddata.is("DDATA", Some("cam3")) && ddata.seq() == Some(6), "{ddata:?}");
    assert_eq!(ddata.names(), ["frames dropped"]);
    assert_eq!(ddata.metric("frames dropped").value, Some(Value::LongValue(12)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ncmd_rebirth_publishes_every_birth_again_with_seq_restarting() {
    let dir = TestDir::new("sparkplug-rebirth");
    let broker = Broker::start(&dir);
    let mut host = Host::connect(broker.port).await;
    let edge = Edge::start(broker.port, "rebirth", &dir, &[("cam1", camera(1.0)), ("cam2", camera(2.0))]);
    let first = expect_births(&mut host, &["cam1", "cam2"]).await;
    edge.set("cam2", |v| v.score = 4.0);
    let ddata = host.next("DDATA cam2").await;
    assert_eq!(ddata.seq(), Some(3));

    host.command(edge.ncmd(), vec![metric(REBIRTH, Value::BooleanValue(true))]).await;
    let nbirth = expect_births(&mut host, &["cam1", "cam2"]).await;
    assert_eq!(nbirth.bd_seq(), first.bd_seq(), "a rebirth keeps the connection's bdSeq");

    // The births after a rebirth carry the current values, and seq goes on from them.
    edge.set("cam1", |v| v.fps = 10.0);
    let ddata = host.next("DDATA cam1").await;
    assert!(ddata.is("DDATA", Some("cam1")) && ddata.seq() == Some(3), "{ddata:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dcmd_threshold_and_acknowledge_reach_the_daemon_and_the_rest_is_ignored() {
    let dir = TestDir::new("sparkplug-dcmd");
    let broker = Broker::start(&dir);
    let mut host = Host::connect(broker.port).await;
    let mut edge = Edge::start(broker.port, "dcmd", &dir, &[("cam1", camera(1.0)), ("cam2", camera(2.0))]);
    expect_births(&mut host, &["cam1", "cam2"]).await;

    host.command(edge.dcmd("cam1"), vec![metric("threshold", Value::DoubleValue(6.5))]).await;
    assert_eq!(
        edge.command().await,
        SparkplugCommand::SetThreshold { camera: "cam1".into(), threshold: 6.5 }
    );

    // A metric that is not writable is skipped; the acknowledge next to it still counts.
    let metrics =
        vec![metric("score", Value::DoubleValue(0.0)), metric("acknowledge", Value::BooleanValue(true))];
    host.command(edge.dcmd("cam2"), metrics).await;
    assert_eq!(edge.command().await, SparkplugCommand::Acknowledge { camera: "cam2".into() });

    // A camera that was never born gets nothing; commands arrive in order, so the next one
    // received proves the first was dropped.
    host.command(edge.dcmd("cam9"), vec![metric("acknowledge", Value::BooleanValue(true))]).await;
    host.command(edge.dcmd("cam1"), vec![metric("acknowledge", Value::BooleanValue(true))]).await;
    assert_eq!(edge.command().await, SparkplugCommand::Acknowledge { camera: "cam1".into() });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_makes_the_broker_publish_the_ndeath_with_the_births_bdseq() {
    let dir = TestDir::new("sparkplug-will");
    let broker = Broker::start(&dir);
    let mut host = Host::connect(broker.port).await;
    let edge = Edge::start(broker.port, "will", &dir, &[("cam1", camera(1.0))]);
    let nbirth = expect_births(&mut host, &["cam1"]).await;

    // Like kill -9: the tasks die with the socket, no DISCONNECT; mosquitto sends the will.
    drop(edge);
    let ndeath = host.expect("the NDEATH will", WAIT, |m| m.kind == "NDEATH").await;
    assert!(ndeath.is("NDEATH", None), "{ndeath:?}");
    assert_eq!((ndeath.qos, ndeath.retain), (QoS::AtLeastOnce, false), "the will is QoS 1, not retained");
    assert_eq!(ndeath.seq(), None, "NDEATH carries no seq");
    assert_eq!(ndeath.bd_seq(), nbirth.bd_seq());
    assert_eq!(ndeath.names(), [BD_SEQ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_publishes_the_ndeath_itself_and_disconnects() {
    let dir = TestDir::new("sparkplug-shutdown");
    let broker = Broker::start(&dir);
    let mut host = Host::connect(broker.port).await;
    let edge = Edge::start(broker.port, "shutdown", &dir, &[("cam1", camera(1.0))]);
    let nbirth = expect_births(&mut host, &["cam1"]).await;

    tokio::time::timeout(WAIT, edge.node.shutdown()).await.expect("shuts down in time");
    let ndeath = host.expect("NDEATH", WAIT, |m| m.kind == "NDEATH").await;
    assert_eq!((ndeath.qos, ndeath.retain, ndeath.seq()), (QoS::AtLeastOnce, false, None));
    assert_eq!(ndeath.bd_seq(), nbirth.bd_seq());
    // DISCONNECT made the broker discard the will: no second NDEATH follows.
    let later = host.drain_for(Duration::from_millis(300)).await;
    assert!(later.iter().all(|m| m.kind != "NDEATH"), "the will was published too: {later:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_broker_restart_the_new_nbirth_carries_the_next_bdseq() {
    let dir = TestDir::new("sparkplug-restart");
    let mut broker = Broker::start(&dir);
    let mut host = Host::connect(broker.port).await;
    let edge = Edge::start(broker.port, "restart", &dir, &[("cam1", camera(1.0))]);
    let first = expect_births(&mut host, &["cam1"]).await;
    assert_eq!(first.bd_seq(), 0);

    tokio::task::block_in_place(|| broker.restart());
    host.subscribed(Duration::from_secs(10)).await;
    // A host that comes back asks for the births it may have missed; if the edge node is not
    // back yet, its own births after the reconnect follow anyway.
    host.command(edge.ncmd(), vec![metric(REBIRTH, Value::BooleanValue(true))]).await;
    let nbirth =
        host.expect("NBIRTH after the restart", Duration::from_secs(20), |m| m.is("NBIRTH", None)).await;
    assert_eq!((nbirth.seq(), nbirth.bd_seq()), (Some(0), 1), "a new connection, the next bdSeq");
    let dbirth = host.next("DBIRTH cam1").await;
    assert!(dbirth.is("DBIRTH", Some("cam1")) && dbirth.seq() == Some(1), "{dbirth:?}");
}
