//! Alarms survive broker outages and inspectd restarts (design.md §3: the durable outbox),
//! against a real mosquitto that the tests stop and start.

#[path = "common/broker.rs"]
mod broker;

use std::time::Duration;

use broker::{alarm, assert_valid, configs, Broker, Received, Subscriber, TestDir};
use inspectd::publish::{AlarmEvent, MqttPublisher, PublishHandle};

const WAIT: Duration = Duration::from_secs(5);

/// Alarm ids in order of first arrival: consumers de-duplicate at-least-once deliveries by id.
fn first_arrivals(messages: &[Received]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for msg in messages {
        let json = msg.json();
        assert_valid("alarm", &json);
        let id = format!(
            "{}:{}",
            json["alarm_id"].as_str().expect("alarm_id"),
            json["event"].as_str().expect("event")
        );
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

fn expected_ids(range: std::ops::Range<u64>) -> Vec<String> {
    range.map(|i| format!("cam1-{i:04}:{}", if i % 2 == 0 { "raised" } else { "cleared" })).collect()
}

fn event(i: u64) -> AlarmEvent {
    if i.is_multiple_of(2) {
        AlarmEvent::Raised
    } else {
        AlarmEvent::Cleared
    }
}

/// Collects alarms until `count` distinct ones have arrived.
async fn collect_alarms(sub: &mut Subscriber, count: usize, timeout: Duration) -> Vec<Received> {
    let mut got = Vec::new();
    while first_arrivals(&got).len() < count {
        got.push(
            sub.expect(
                &format!("{count} distinct alarms (have {})", first_arrivals(&got).len()),
                timeout,
                |_| true,
            )
            .await,
        );
    }
    got
}

async fn wait_until(what: &str, timeout: Duration, cond: impl Fn() -> bool) {
    let until = tokio::time::Instant::now() + timeout;
    while !cond() {
        assert!(tokio::time::Instant::now() < until, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_connected(handle: &PublishHandle, up: bool) {
    let mut connected = handle.connected();
    tokio::time::timeout(Duration::from_secs(10), connected.wait_for(|c| *c == up))
        .await
        .unwrap_or_else(|_| panic!("publisher connected == {up} in time"))
        .expect("publisher alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_raised_during_a_broker_outage_all_arrive_in_order() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let dir = TestDir::new("outage");
    // Persistence keeps the test subscriber's session (and the alarms queued for it) across
    // the restart, so it cannot miss alarms the publisher sends before it is back.
    let persistence =
        format!("persistence true\npersistence_location {}/\nallow_anonymous true\n", dir.0.display());
    let mut broker = Broker::start_with(&dir, &persistence);
    let mut sub =
        Subscriber::connect_as(broker.port, "inspectd/outage/+/alarm", Some("outage-gateway")).await;
    let (mqtt, node) = configs(broker.port, "outage", &dir);
    let (publisher, _acks) = MqttPublisher::start(&mqtt, &node, &dir.path("outbox")).expect("starts");
    wait_connected(&publisher, true).await;

    // Alarms keep coming while the broker dies (some are in flight when it does), while it
    // is down (they wait in the outbox) and after it is back.
    let producer = {
        let handle = publisher.handle();
        tokio::spawn(async move {
            for i in 0..30 {
                handle.publish_alarm("cam1", &alarm(i, event(i))).await.expect("stored");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    tokio::task::block_in_place(|| broker.stop());
    wait_connected(&publisher, false).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(publisher.outbox_depth() > 0, "alarms wait on disk while the broker is down");

    tokio::task::block_in_place(|| broker.restart());
    producer.await.expect("producer finished");
    let received = collect_alarms(&mut sub, 30, Duration::from_secs(15)).await;
    assert_eq!(first_arrivals(&received), expected_ids(0..30));
    wait_until("the outbox is empty", WAIT, || publisher.outbox_depth() == 0).await;
    let stats = publisher.stats();
    assert!(stats.connects >= 2 && stats.connection_errors >= 1, "{stats:?}");
    publisher.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_left_in_the_outbox_are_delivered_by_the_next_process() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let dir = TestDir::new("restart");
    let mut broker = Broker::start(&dir);
    broker.stop();
    let (mqtt, node) = configs(broker.port, "restart", &dir);
    let outbox = dir.path("outbox");

    // First run: the broker is down the whole time; shutdown gives up after its deadline.
    let (first, _acks) = MqttPublisher::start(&mqtt, &node, &outbox).expect("starts without a broker");
    for i in 0..4 {
        first.publish_alarm("cam1", &alarm(i, event(i))).await.expect("stored");
    }
    let first_handle = first.handle();
    let started = std::time::Instant::now();
    first.shutdown(Duration::from_millis(300)).await;
    assert!(started.elapsed() < Duration::from_secs(2), "shutdown keeps to its deadline");
    assert_eq!(first_handle.outbox_depth(), 4, "nothing was acknowledged");

    // Second run, broker back: the survivors go out first, then what the new run raises.
    broker.restart();
    let mut sub = Subscriber::connect(broker.port, "inspectd/restart/+/alarm").await;
    let (second, _acks) = MqttPublisher::start(&mqtt, &node, &outbox).expect("starts");
    second.publish_alarm("cam1", &alarm(4, event(4))).await.expect("stored");

    let received = collect_alarms(&mut sub, 5, WAIT).await;
    assert_eq!(first_arrivals(&received), expected_ids(0..5));
    wait_until("the outbox is empty", WAIT, || second.outbox_depth() == 0).await;
    second.shutdown(Duration::from_secs(2)).await;
}
