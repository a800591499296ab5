//! Local accounts paid with STREAM and PSK2 through a whole node on memory links: what is
//! credited, when the Fulfill leaves, and every bad input a sender can send.

use super::*;
use crate::link::memory::MemoryLink;
use crate::messages::GetBalance;
use crate::store::memory::MemoryStore;
use crate::test_support::run;
use ilp::packet::{Fulfill, PacketType, Prepare, PrepareBuilder, Reject};
use ilp::psk2::{self, Psk2Packet};
use ilp::stream::credentials::{Credentials, IssueOptions, ReceiverKeys};
use ilp::stream::{Frame, StreamKeys, StreamPacket};

const START_MS: u64 = 1_700_000_000_000;

/// A node `test.node` with a child `payer` (on a memory link, returned) and the local account
/// `shop` (with `shop_extra` in its table), rates from `rates`.
struct Fixture {
    node: Node,
    payer: MemoryLink,
    store: Arc<MemoryStore>,
}

fn config(shop_extra: &str, rates: &str, payer_asset: &str) -> Config {
    let text = format!(
        "[node]\nilp_address = \"test.node\"\nspread = \"0\"\n[broadcast]\nenabled = false\n\
         {rates}\n\
         [accounts.payer]\nrelation = \"child\"\nlink = {{ type = \"memory\" }}\n{payer_asset}\n\
         [accounts.payer.balance]\nmaximum = 1000000000000\n\
         [accounts.shop]\nrelation = \"child\"\nlink = {{ type = \"local\" }}\n{shop_extra}\n"
    );
    Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn start(config: &Config, store: Arc<MemoryStore>) -> Fixture {
    let (node_end, payer) = MemoryLink::pair();
    let links = BTreeMap::from([
        (
            AccountId::from("payer"),
            Arc::new(node_end) as Arc<dyn Link>,
        ),
        (
            AccountId::from("shop"),
            Arc::new(crate::link::UnconnectedLink) as Arc<dyn Link>,
        ),
    ]);
    let node = Node::start(
        config,
        NodeOptions {
            clock: Clock::starting_at(START_MS),
            store: store.clone(),
            seed: 7,
            links,
            metrics: None,
        },
    )
    .unwrap();
    Fixture { node, payer, store }
}

fn credentials(node: &Node, psk2: bool) -> Credentials {
    let options = IssueOptions {
        psk2,
        ..IssueOptions::default()
    };
    let shop = Address::try_from("test.node.shop").unwrap();
    node.receivers
        .keys()
        .issue("shop", &shop, &options, 1_700_000_000, &[9; 12])
        .unwrap()
}

fn prepare(destination: &Address, amount: u64, condition: &[u8; 32], data: &[u8]) -> Prepare {
    PrepareBuilder {
        amount,
        expires_at: Timestamp::from_unix_millis(START_MS + 30_000),
        execution_condition: condition,
        destination,
        data,
    }
    .build()
    .unwrap()
}

/// A STREAM Prepare of `amount` on `credentials`' connection carrying `frames`, asking for at
/// least `min` to arrive; fulfillable unless `probe`.
fn stream_prepare(
    credentials: &Credentials,
    sequence: u64,
    amount: u64,
    min: u64,
    frames: Vec<Frame>,
    probe: bool,
) -> Prepare {
    let keys = StreamKeys::new(&credentials.shared_secret);
    let packet = StreamPacket {
        packet_type: PacketType::Prepare,
        sequence,
        prepare_amount: min,
        frames,
    };
    let mut iv = [0; 12];
    iv[..8].copy_from_slice(&sequence.to_be_bytes());
    let data = keys.encrypt_packet(&iv, &packet).unwrap();
    let condition = if probe {
        [7; 32]
    } else {
        keys.condition(&data)
    };
    prepare(&credentials.destination, amount, &condition, &data)
}

fn money(amount_shares: u64) -> Vec<Frame> {
    vec![Frame::StreamMoney {
        stream_id: 1,
        shares: amount_shares,
    }]
}

async fn send(link: &MemoryLink, prepare: Prepare) -> Result<Fulfill, Reject> {
    link.send_prepare(prepare).await.unwrap()
}

/// The STREAM reply in a Fulfill's or Reject's data.
fn reply(credentials: &Credentials, data: &[u8]) -> StreamPacket {
    StreamKeys::new(&credentials.shared_secret)
        .decrypt_packet(data)
        .expect("a reply the sender can read")
}

async fn balance(node: &Node, id: &str) -> i64 {
    node.balance
        .send(GetBalance {
            account: AccountId::from(id),
        })
        .await
        .unwrap()
        .map_or(0, |b| b.balance)
}

#[test]
fn a_stream_payment_is_credited_once_and_a_repeat_is_answered_from_memory() {
    run(async {
        let f = start(&config("", "", ""), Arc::new(MemoryStore::new()));
        let c = credentials(&f.node, false);
        let first = stream_prepare(&c, 1, 100, 100, money(1), false);
        let fulfill = send(&f.payer, first.clone()).await.expect("fulfilled");
        let answer = reply(&c, fulfill.data());
        assert_eq!(answer.packet_type, PacketType::Fulfill);
        assert_eq!((answer.sequence, answer.prepare_amount), (1, 100));
        assert!(answer.frames.contains(&Frame::StreamMaxMoney {
            stream_id: 1,
            receive_max: u64::MAX,
            total_received: 100,
        }));
        assert_eq!(balance(&f.node, "shop").await, -100);
        assert_eq!(balance(&f.node, "payer").await, 100);
        // The credit is durable with the fulfill record before the Fulfill left.
        assert_eq!(f.store.load_balances().unwrap().get("shop"), Some(&-100));

        // The same bytes again: the same Fulfill, nothing booked.
        let again = send(&f.payer, first).await.expect("fulfilled");
        assert_eq!(again.as_bytes(), fulfill.as_bytes());
        assert_eq!(balance(&f.node, "shop").await, -100);

        // The next packet of the connection adds to its stream's total.
        let second = send(&f.payer, stream_prepare(&c, 2, 50, 0, money(1), false))
            .await
            .expect("fulfilled");
        assert!(reply(&c, second.data())
            .frames
            .contains(&Frame::StreamMaxMoney {
                stream_id: 1,
                receive_max: u64::MAX,
                total_received: 150,
            }));
        assert_eq!(balance(&f.node, "shop").await, -150);
        assert_eq!(balance(&f.node, "payer").await, 150);
    });
}

#[test]
fn probes_and_minimums_are_answered_with_a_readable_reply_and_move_nothing() {
    run(async {
        // A bounded receiver: a reservation would refuse the probe's amount with T04.
        let f = start(
            &config("[accounts.shop.receiver]\nmaximum = 1000", "", ""),
            Arc::new(MemoryStore::new()),
        );
        let c = credentials(&f.node, false);
        for (sequence, amount) in [(1, 1), (2, 1_000), (3, 1_000_000_000)] {
            let reject = send(
                &f.payer,
                stream_prepare(&c, sequence, amount, 0, money(1), true),
            )
            .await
            .unwrap_err();
            assert_eq!(reject.code(), ErrorCode::F99_APPLICATION_ERROR);
            let answer = reply(&c, reject.data());
            assert_eq!(answer.packet_type, PacketType::Reject);
            assert_eq!((answer.sequence, answer.prepare_amount), (sequence, amount));
        }
        // Less arrives than the sender asks for.
        let reject = send(&f.payer, stream_prepare(&c, 4, 10, 11, money(1), false))
            .await
            .unwrap_err();
        assert_eq!(reject.code(), ErrorCode::F99_APPLICATION_ERROR);
        assert_eq!(reply(&c, reject.data()).prepare_amount, 10);
        assert_eq!(balance(&f.node, "shop").await, 0);
        assert_eq!(balance(&f.node, "payer").await, 0);
    });
}

#[test]
fn asset_details_are_told_for_an_empty_address_and_zero_amounts_are_fulfilled() {
    run(async {
        let f = start(
            &config("asset_code = \"USD\"\nasset_scale = 2", "", ""),
            Arc::new(MemoryStore::new()),
        );
        let c = credentials(&f.node, false);
        let hello = vec![Frame::ConnectionNewAddress {
            source_account: String::new(),
        }];
        let fulfill = send(&f.payer, stream_prepare(&c, 1, 0, 0, hello, false))
            .await
            .expect("a zero amount is fulfilled");
        assert!(reply(&c, fulfill.data())
            .frames
            .contains(&Frame::ConnectionAssetDetails {
                source_asset_code: "USD".to_owned(),
                source_asset_scale: 2,
            }));
        // `_` before the token (a newer asset probe) names the same connection.
        let (prefix, token) = c.destination.as_str().rsplit_once('.').unwrap();
        let probe_address = Address::try_from(format!("{prefix}._.{token}").as_str()).unwrap();
        let probe = Credentials {
            destination: probe_address,
            shared_secret: c.shared_secret,
        };
        assert!(
            send(&f.payer, stream_prepare(&probe, 2, 0, 0, vec![], false))
                .await
                .is_ok()
        );
        assert_eq!(balance(&f.node, "shop").await, 0);
    });
}

#[test]
fn a_receiver_at_its_maximum_refuses_with_the_room_it_has_left() {
    run(async {
        let f = start(
            &config("[accounts.shop.receiver]\nmaximum = 150", "", ""),
            Arc::new(MemoryStore::new()),
        );
        let c = credentials(&f.node, false);
        send(&f.payer, stream_prepare(&c, 1, 100, 0, money(1), false))
            .await
            .expect("fits");
        let reject = send(&f.payer, stream_prepare(&c, 2, 100, 0, money(1), false))
            .await
            .unwrap_err();
        assert_eq!(reject.code(), ErrorCode::F99_APPLICATION_ERROR);
        let answer = reply(&c, reject.data());
        assert!(answer.frames.contains(&Frame::StreamMaxMoney {
            stream_id: 1,
            receive_max: 150,
            total_received: 100,
        }));
        assert_eq!(balance(&f.node, "shop").await, -100);
        assert_eq!(balance(&f.node, "payer").await, 100);
        // What fits still goes in.
        send(&f.payer, stream_prepare(&c, 3, 50, 0, money(1), false))
            .await
            .expect("fits exactly");
        assert_eq!(balance(&f.node, "shop").await, -150);
    });
}

#[test]
fn unreadable_and_foreign_packets_are_rejected_f06_and_move_nothing() {
    run(async {
        let f = start(&config("", "", ""), Arc::new(MemoryStore::new()));
        let c = credentials(&f.node, false);
        let good = stream_prepare(&c, 1, 100, 0, money(1), false);

        let wrong_secret = Credentials {
            destination: c.destination.clone(),
            shared_secret: [1; 32],
        };
        let truncated = {
            let data = &good.data()[..good.data().len() - 5];
            let condition = StreamKeys::new(&c.shared_secret).condition(data);
            prepare(&c.destination, 100, &condition, data)
        };
        // A token another node issued for an account of the same name.
        let other_node = ReceiverKeys::new(&[42; 32])
            .issue(
                "shop",
                &Address::try_from("test.node.shop").unwrap(),
                &IssueOptions::default(),
                1_700_000_000,
                &[3; 12],
            )
            .unwrap();
        let no_token = Credentials {
            destination: Address::try_from("test.node.shop").unwrap(),
            shared_secret: c.shared_secret,
        };
        for bad in [
            stream_prepare(&wrong_secret, 1, 100, 0, money(1), false),
            truncated,
            stream_prepare(&other_node, 1, 100, 0, money(1), false),
            stream_prepare(&no_token, 1, 100, 0, money(1), false),
        ] {
            let reject = send(&f.payer, bad).await.unwrap_err();
            assert_eq!(reject.code(), ErrorCode::F06_UNEXPECTED_PAYMENT);
            assert!(reject.data().is_empty());
            assert_eq!(
                reject.triggered_by().map(|a| a.to_string()).as_deref(),
                Some("test.node.shop")
            );
        }
        assert_eq!(balance(&f.node, "shop").await, 0);
        assert_eq!(balance(&f.node, "payer").await, 0);
    });
}

#[test]
fn the_credited_amount_is_what_arrived_after_the_exchange_rate() {
    run(async {
        // The payer pays in XRP (scale 9), the shop receives USD (scale 2). Rates are units per
        // unit of the base asset (as the JS connector's): 2 XRP a dollar, 1 XRP = 0.5 USD.
        let rates = "[rates]\nbackend = \"static\"\n[rates.static]\nUSD = \"1\"\nXRP = \"2\"";
        let f = start(
            &config(
                "asset_code = \"USD\"\nasset_scale = 2",
                rates,
                "asset_code = \"XRP\"\nasset_scale = 9",
            ),
            Arc::new(MemoryStore::new()),
        );
        let c = credentials(&f.node, false);
        // 3 XRP = 1.5 USD = 150 cents.
        let fulfill = send(
            &f.payer,
            stream_prepare(&c, 1, 3_000_000_000, 150, money(1), false),
        )
        .await
        .expect("fulfilled");
        assert_eq!(reply(&c, fulfill.data()).prepare_amount, 150);
        assert_eq!(balance(&f.node, "shop").await, -150);
        assert_eq!(balance(&f.node, "payer").await, 3_000_000_000);
    });
}

#[test]
fn a_psk2_request_is_credited_and_answered_with_a_response() {
    run(async {
        let f = start(&config("", "", ""), Arc::new(MemoryStore::new()));
        let c = credentials(&f.node, true);
        let keys = psk2::keys(&c.shared_secret);
        let request = Psk2Packet::Request {
            packet_type: psk2::TYPE_REQUEST,
            request_id: 5,
            amount: 40,
            data: Vec::new(),
        };
        let data = keys.encrypt(&[4; 12], &request.encode()).unwrap();
        let condition = ilp::stream::sha256(&keys.fulfillment(&data));
        let fulfill = send(&f.payer, prepare(&c.destination, 40, &condition, &data))
            .await
            .expect("fulfilled");
        let response = Psk2Packet::decode(&keys.decrypt(fulfill.data()).unwrap()).unwrap();
        assert!(matches!(
            response,
            Psk2Packet::Request {
                packet_type: psk2::TYPE_RESPONSE,
                request_id: 5,
                amount: 40,
                ..
            }
        ));
        assert_eq!(balance(&f.node, "shop").await, -40);
        // A STREAM packet on PSK2 credentials is not readable as PSK2.
        let reject = send(&f.payer, stream_prepare(&c, 1, 10, 0, money(1), false))
            .await
            .unwrap_err();
        assert_eq!(reject.code(), ErrorCode::F06_UNEXPECTED_PAYMENT);
    });
}

#[test]
fn the_receiver_secret_is_drawn_once_and_kept_in_the_store() {
    let store = Arc::new(MemoryStore::new());
    let issued = run({
        let store = store.clone();
        async move {
            let f = start(&config("", "", ""), store);
            credentials(&f.node, false)
        }
    });
    assert!(store.get_record(RECEIVER_SECRET_KEY).unwrap().is_some());
    run({
        let store = store.clone();
        let issued = issued.clone();
        async move {
            // A restarted node takes the credentials it gave out before.
            let f = start(&config("", "", ""), store);
            send(&f.payer, stream_prepare(&issued, 1, 10, 0, money(1), false))
                .await
                .expect("fulfilled after the restart");
            assert_eq!(balance(&f.node, "shop").await, -10);
        }
    });
    // A configured secret wins over the stored one.
    let configured = config("", "", "").node.receiver_secret;
    assert!(configured.is_none());
    run(async move {
        let mut c = config("", "", "");
        c.node.receiver_secret = Some(ilp::config::Secret32([8; 32]));
        let f = start(&c, store);
        let reject = send(&f.payer, stream_prepare(&issued, 2, 10, 0, money(1), false))
            .await
            .unwrap_err();
        assert_eq!(reject.code(), ErrorCode::F06_UNEXPECTED_PAYMENT);
    });
}

/// The receipt for stream 1 in a Fulfill's reply, verified with `secret`.
fn receipt_total(credentials: &Credentials, fulfill: &Fulfill, secret: &[u8; 32]) -> u64 {
    let frames = reply(credentials, fulfill.data()).frames;
    let receipt = frames
        .iter()
        .find_map(|f| match f {
            Frame::StreamReceipt { receipt, .. } => Some(receipt.clone()),
            _ => None,
        })
        .expect("a receipt");
    ilp::stream::Receipt::verify(&receipt, secret)
        .unwrap()
        .total_received
}

#[test]
fn every_credit_is_one_durable_event_and_nothing_else_is() {
    run(async {
        let f = start(&config("", "", ""), Arc::new(MemoryStore::new()));
        let c = credentials(&f.node, false);
        let first = stream_prepare(&c, 1, 100, 0, money(1), false);
        send(&f.payer, first.clone()).await.expect("fulfilled");
        send(&f.payer, first).await.expect("a repeat, answered");
        send(&f.payer, stream_prepare(&c, 2, 5, 0, money(1), true))
            .await
            .expect_err("a probe");
        let mut closing = money(1);
        closing.push(Frame::ConnectionClose {
            code: ilp::stream::ErrorCode::NO_ERROR,
            message: String::new(),
        });
        send(&f.payer, stream_prepare(&c, 3, 40, 0, closing, false))
            .await
            .expect("fulfilled");
        let events = crate::payment_log::read_events(f.store.as_ref(), "shop", 0, 100).unwrap();
        let summary: Vec<_> = events
            .iter()
            .map(|e| {
                (
                    e.seq,
                    e.amount.as_str(),
                    e.from_account.as_str(),
                    e.connection_closed,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![(1, "100", "payer", false), (2, "40", "payer", true)]
        );
        assert_eq!(events[1].streams, vec![("1".to_owned(), "140".to_owned())]);
        assert_eq!(events[0].protocol, "stream");
        assert_eq!(events[0].connection_id, events[1].connection_id);
        assert_eq!(events[0].connection_id.len(), 32);
        assert_eq!(events[0].time_ms, START_MS);
        // Credited = the sum of the events.
        assert_eq!(balance(&f.node, "shop").await, -140);
    });
}

#[test]
fn receipt_totals_go_on_from_where_they_were_after_a_restart() {
    let store = Arc::new(MemoryStore::new());
    let setup = ilp::spsp::ReceiptSetup {
        nonce: [1; 16],
        secret: [2; 32],
    };
    let secret = setup.secret;
    let issue = move |node: &Node| {
        let options = IssueOptions {
            receipts: Some(setup.clone()),
            ..IssueOptions::default()
        };
        node.receivers
            .keys()
            .issue(
                "shop",
                &Address::try_from("test.node.shop").unwrap(),
                &options,
                1_700_000_000,
                &[5; 12],
            )
            .unwrap()
    };
    let c = run({
        let store = store.clone();
        async move {
            let f = start(&config("", "", ""), store);
            let c = issue(&f.node);
            let fulfill = send(&f.payer, stream_prepare(&c, 1, 100, 0, money(1), false))
                .await
                .unwrap();
            assert_eq!(receipt_total(&c, &fulfill, &secret), 100);
            c
        }
    });
    run({
        async move {
            let f = start(&config("", "", ""), store);
            let fulfill = send(&f.payer, stream_prepare(&c, 2, 50, 0, money(1), false))
                .await
                .unwrap();
            // Counted from the stored 100, not from 0: a verifier never sees a total go back.
            assert_eq!(receipt_total(&c, &fulfill, &secret), 150);
            assert_eq!(balance(&f.node, "shop").await, -150);
            let events = crate::payment_log::read_events(f.store.as_ref(), "shop", 0, 10).unwrap();
            assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
        }
    });
}

#[test]
fn a_close_that_moves_no_money_is_an_event_too() {
    run(async {
        let f = start(&config("", "", ""), Arc::new(MemoryStore::new()));
        let c = credentials(&f.node, false);
        send(&f.payer, stream_prepare(&c, 1, 25, 0, money(1), false))
            .await
            .expect("fulfilled");
        // As the JS sender closes: no amount, a condition nobody can fulfill.
        let close = vec![Frame::ConnectionClose {
            code: ilp::stream::ErrorCode::NO_ERROR,
            message: String::new(),
        }];
        let reject = send(&f.payer, stream_prepare(&c, 2, 0, 0, close, true))
            .await
            .unwrap_err();
        assert_eq!(reject.code(), ErrorCode::F99_APPLICATION_ERROR);
        // Recorded with the keeper's next batch, after the answer: wait for it (bounded).
        let mut events = Vec::new();
        for _ in 0..200 {
            events = crate::payment_log::read_events(f.store.as_ref(), "shop", 0, 10).unwrap();
            if events.len() == 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(
            (events[1].amount.as_str(), events[1].connection_closed),
            ("0", true)
        );
        assert_eq!(events[1].streams, vec![("1".to_owned(), "25".to_owned())]);
        assert_eq!(balance(&f.node, "shop").await, -25);
    });
}

#[test]
fn old_events_are_deleted_past_what_the_account_keeps() {
    let store = Arc::new(MemoryStore::new());
    let keep = "[accounts.shop.receiver]\nkeep_events = 2";
    let c = run({
        let store = store.clone();
        async move {
            let f = start(&config(keep, "", ""), store);
            let c = credentials(&f.node, false);
            for sequence in 1..=5 {
                send(
                    &f.payer,
                    stream_prepare(&c, sequence, 10, 0, money(1), false),
                )
                .await
                .expect("fulfilled");
            }
            c
        }
    });
    run(async move {
        // A node starting on the store prunes at once, then every minute.
        let f = start(&config(keep, "", ""), store);
        let mut seqs = Vec::new();
        for _ in 0..200 {
            seqs = crate::payment_log::read_events(f.store.as_ref(), "shop", 0, 10)
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect();
            if seqs.len() == 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(seqs, vec![4, 5]);
        // The balance is not the log: all 50 stay credited, and numbering goes on.
        assert_eq!(balance(&f.node, "shop").await, -50);
        send(&f.payer, stream_prepare(&c, 6, 10, 0, money(1), false))
            .await
            .expect("fulfilled");
        let after = crate::payment_log::read_events(f.store.as_ref(), "shop", 5, 10).unwrap();
        assert_eq!(after[0].seq, 6);
    });
}
