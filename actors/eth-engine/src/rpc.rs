//! A minimal Ethereum JSON-RPC 2.0 client over HTTP(S): one POST per call, bounded by a
//! timeout (connecting included), the answer read up to [`MAX_RESPONSE_BYTES`].
//!
//! Failures come in three kinds ([`RpcError`]): the node could not be reached or did not
//! answer with a JSON-RPC response (transport: the request may or may not have been seen, so a
//! later retry may help), the node answered with a JSON-RPC error object (node), or the result
//! does not have the shape the method promises (malformed).
//!
//! `https://` URLs are checked against the system CA roots. Error messages name the node by its
//! origin only (scheme, host, port), never by the path, which some providers use for API keys.

use crate::eth::{self, Address, H256};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{ACCEPT, CONTENT_TYPE};
use hyper::{Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use ilp::config::ClientTlsConfig;
use ilp_actors::link::http::client::{error_chain, https_client};
use ilp_actors::tls;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Largest response body read (a block with its transactions stays far below it).
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Longest part of an unexpected body or value quoted in an error message.
const QUOTED_CHARS: usize = 200;

/// The configuration key named in errors about the URL.
const URL_KEY: &str = "engine.rpc_url";

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// The node could not be reached, did not answer in time, answered with an HTTP status
    /// other than 200, or not with a JSON-RPC response.
    #[error("JSON-RPC transport error: {0}")]
    Transport(String),
    /// The node answered with a JSON-RPC error object.
    #[error("the node answered error {code}: {message}")]
    Node { code: i64, message: String },
    /// The result does not have the shape the method promises.
    #[error("unexpected JSON-RPC result: {0}")]
    Malformed(String),
}

impl RpcError {
    /// Whether the call failed in transport: the node may not have seen it, or its answer was
    /// lost, so trying again later may succeed.
    pub fn is_transport(&self) -> bool {
        matches!(self, RpcError::Transport(_))
    }
}

/// What a transaction's receipt says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// The block that includes the transaction.
    pub block_number: u64,
    /// `status` 1 (executed) rather than 0 (reverted).
    pub success: bool,
}

/// The parts of a transaction the engine reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxInfo {
    pub hash: H256,
    pub from: Address,
    /// `None` for a contract creation.
    pub to: Option<Address>,
    /// Wei.
    pub value: u128,
    /// `None` while the transaction is pending.
    pub block_number: Option<u64>,
}

/// A block and its transactions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub number: u64,
    pub hash: H256,
    pub transactions: Vec<TxInfo>,
}

/// A JSON-RPC client of one node. Calls may run concurrently.
pub struct Rpc {
    uri: Uri,
    /// The URL's origin (scheme, host, port), for messages.
    endpoint: String,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    next_id: AtomicU64,
    timeout: Duration,
}

impl std::fmt::Debug for Rpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rpc")
            .field("endpoint", &self.endpoint)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Rpc {
    /// A client of the node at `url` (`http://` or `https://`, without user or password);
    /// each call, connecting included, must end within `timeout`.
    pub fn new(url: url::Url, timeout: Duration) -> Result<Rpc, RpcError> {
        let bad = |reason: &str| RpcError::Transport(format!("{URL_KEY}: {reason}"));
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("a user or password in the URL is not supported"));
        }
        let tls_config = match url.scheme() {
            "https" => tls::client_config(&ClientTlsConfig::default(), URL_KEY),
            "http" => tls::trust_nothing_client_config(),
            _ => return Err(bad("must be http:// or https://")),
        }
        .map_err(|e| RpcError::Transport(e.to_string()))?;
        let uri = url
            .as_str()
            .parse::<Uri>()
            .map_err(|e| bad(&e.to_string()))?;
        Ok(Rpc {
            uri,
            endpoint: url.origin().ascii_serialization(),
            client: https_client(tls_config, timeout, false),
            next_id: AtomicU64::new(1),
            timeout,
        })
    }

    /// Calls `method` with `params` (a JSON array) and returns its `result`.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let endpoint = &self.endpoint;
        let transport =
            |what: String| RpcError::Transport(format!("{method} at {endpoint}: {what}"));
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let request = Request::post(self.uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| transport(format!("cannot build the request: {e}")))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| transport(error_chain(&e)))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| transport(format!("cannot read the response: {}", error_chain(&*e))))?
                .to_bytes();
            Ok::<_, RpcError>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                transport(format!("no answer within {} ms", self.timeout.as_millis()))
            })??;
        if status != StatusCode::OK {
            return Err(transport(format!("HTTP {status}{}", quote_body(&body))));
        }
        parse_response(&body, id).map_err(|e| match e {
            RpcError::Transport(what) => transport(what),
            other => other,
        })
    }

    /// `eth_chainId`.
    pub async fn chain_id(&self) -> Result<u64, RpcError> {
        let result = self.call("eth_chainId", json!([])).await?;
        as_u64(&result, "eth_chainId")
    }

    /// `eth_blockNumber`: the latest block.
    pub async fn block_number(&self) -> Result<u64, RpcError> {
        let result = self.call("eth_blockNumber", json!([])).await?;
        as_u64(&result, "eth_blockNumber")
    }

    /// `eth_gasPrice`, in wei per gas.
    pub async fn gas_price(&self) -> Result<u128, RpcError> {
        let result = self.call("eth_gasPrice", json!([])).await?;
        as_quantity(&result, "eth_gasPrice")
    }

    /// `eth_getTransactionCount` of `a` at `block` (`"latest"`, `"pending"`, ...): the next
    /// nonce.
    pub async fn transaction_count(&self, a: &Address, block: &str) -> Result<u64, RpcError> {
        let params = json!([eth::format_address(a), block]);
        let result = self.call("eth_getTransactionCount", params).await?;
        as_u64(&result, "eth_getTransactionCount")
    }

    /// `eth_getBalance` of `a` at the latest block, in wei.
    pub async fn balance(&self, a: &Address) -> Result<u128, RpcError> {
        let params = json!([eth::format_address(a), "latest"]);
        let result = self.call("eth_getBalance", params).await?;
        as_quantity(&result, "eth_getBalance")
    }

    /// `eth_sendRawTransaction`: submits a signed transaction and returns its hash.
    pub async fn send_raw_transaction(&self, raw: &[u8]) -> Result<H256, RpcError> {
        let params = json!([eth::format_data(raw)]);
        let result = self.call("eth_sendRawTransaction", params).await?;
        as_hash(&result, "eth_sendRawTransaction")
    }

    /// `eth_getTransactionReceipt`: `None` while the transaction is not in a block (or unknown).
    pub async fn receipt(&self, hash: &H256) -> Result<Option<Receipt>, RpcError> {
        let params = json!([eth::format_h256(hash)]);
        let result = self.call("eth_getTransactionReceipt", params).await?;
        parse_receipt(&result)
    }

    /// `eth_getTransactionByHash`: `None` when the node does not know the transaction.
    pub async fn transaction(&self, hash: &H256) -> Result<Option<TxInfo>, RpcError> {
        let params = json!([eth::format_h256(hash)]);
        let result = self.call("eth_getTransactionByHash", params).await?;
        optional(&result, parse_tx)
    }

    /// `eth_getBlockByNumber` with full transactions: `None` when there is no such block yet.
    pub async fn block_with_transactions(&self, number: u64) -> Result<Option<Block>, RpcError> {
        let params = json!([eth::format_quantity(u128::from(number)), true]);
        let result = self.call("eth_getBlockByNumber", params).await?;
        parse_block(&result)
    }
}

/// The `result` of the JSON-RPC response `body` to request `id`, or its error object as
/// [`RpcError::Node`]. Anything that is not a JSON-RPC response is a transport error.
fn parse_response(body: &[u8], id: u64) -> Result<Value, RpcError> {
    let response: Value = serde_json::from_slice(body).map_err(|e| {
        let body = quote_body(body);
        RpcError::Transport(format!("the response is not JSON ({e}){body}"))
    })?;
    let Value::Object(mut response) = response else {
        return Err(RpcError::Transport(format!(
            "the response is not a JSON-RPC object{}",
            quote_body(body)
        )));
    };
    // An error may carry a null id (a node that could not read ours).
    if let Some(error) = response.get("error").filter(|e| !e.is_null()) {
        return Err(RpcError::Node {
            code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: error
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| error.to_string(), str::to_owned),
        });
    }
    let answered = response.get("id").unwrap_or(&NULL);
    if answered.as_u64() != Some(id) {
        return Err(RpcError::Transport(format!(
            "the response's id {} is not the request's {id}",
            quote_value(answered)
        )));
    }
    response
        .remove("result")
        .ok_or_else(|| RpcError::Transport("the response has neither result nor error".into()))
}

/// A receipt, or `None` for `null` (unknown or pending transaction) and for a receipt without a
/// block number (how some nodes describe a pending transaction).
fn parse_receipt(v: &Value) -> Result<Option<Receipt>, RpcError> {
    if v.is_null() {
        return Ok(None);
    }
    expect_object(v, "receipt")?;
    let block = member(v, "blockNumber");
    let Some(block_number) = optional(block, |b| as_u64(b, "receipt.blockNumber"))? else {
        return Ok(None);
    };
    let success = match as_quantity(member(v, "status"), "receipt.status")? {
        0 => false,
        1 => true,
        other => {
            return Err(RpcError::Malformed(format!(
                "receipt.status: {other} is neither 0 nor 1"
            )));
        }
    };
    Ok(Some(Receipt {
        block_number,
        success,
    }))
}

/// A transaction object (of `eth_getTransactionByHash` or a full block).
fn parse_tx(v: &Value) -> Result<TxInfo, RpcError> {
    expect_object(v, "transaction")?;
    let block_number = member(v, "blockNumber");
    Ok(TxInfo {
        hash: as_hash(member(v, "hash"), "transaction.hash")?,
        from: as_address(member(v, "from"), "transaction.from")?,
        to: optional(member(v, "to"), |t| as_address(t, "transaction.to"))?,
        value: as_quantity(member(v, "value"), "transaction.value")?,
        block_number: optional(block_number, |b| as_u64(b, "transaction.blockNumber"))?,
    })
}

/// A block with full transaction objects, or `None` for `null`.
fn parse_block(v: &Value) -> Result<Option<Block>, RpcError> {
    if v.is_null() {
        return Ok(None);
    }
    expect_object(v, "block")?;
    let transactions = member(v, "transactions");
    let transactions = transactions
        .as_array()
        .ok_or_else(|| malformed("block.transactions", transactions, "an array"))?;
    Ok(Some(Block {
        number: as_u64(member(v, "number"), "block.number")?,
        hash: as_hash(member(v, "hash"), "block.hash")?,
        transactions: transactions
            .iter()
            .map(parse_tx)
            .collect::<Result<_, _>>()?,
    }))
}

static NULL: Value = Value::Null;

/// Member `name` of object `v`; an absent member reads as null.
fn member<'a>(v: &'a Value, name: &str) -> &'a Value {
    v.get(name).unwrap_or(&NULL)
}

/// `None` for null, else `parse(v)`.
fn optional<T>(
    v: &Value,
    parse: impl FnOnce(&Value) -> Result<T, RpcError>,
) -> Result<Option<T>, RpcError> {
    if v.is_null() {
        Ok(None)
    } else {
        parse(v).map(Some)
    }
}

fn expect_object(v: &Value, name: &str) -> Result<(), RpcError> {
    if v.is_object() {
        Ok(())
    } else {
        Err(malformed(name, v, "an object"))
    }
}

fn as_str<'a>(v: &'a Value, name: &str, expected: &str) -> Result<&'a str, RpcError> {
    v.as_str().ok_or_else(|| malformed(name, v, expected))
}

fn as_quantity(v: &Value, name: &str) -> Result<u128, RpcError> {
    let text = as_str(v, name, "a hex quantity")?;
    eth::parse_quantity(text).map_err(|e| RpcError::Malformed(format!("{name}: {e}")))
}

fn as_u64(v: &Value, name: &str) -> Result<u64, RpcError> {
    let n = as_quantity(v, name)?;
    u64::try_from(n)
        .map_err(|_| RpcError::Malformed(format!("{name}: {n} does not fit in 64 bits")))
}

fn as_address(v: &Value, name: &str) -> Result<Address, RpcError> {
    let text = as_str(v, name, "an address")?;
    eth::parse_address(text).map_err(|e| RpcError::Malformed(format!("{name}: {e}")))
}

fn as_hash(v: &Value, name: &str) -> Result<H256, RpcError> {
    let text = as_str(v, name, "a 32-byte hash")?;
    eth::parse_h256(text).map_err(|e| RpcError::Malformed(format!("{name}: {e}")))
}

fn malformed(name: &str, v: &Value, expected: &str) -> RpcError {
    RpcError::Malformed(format!(
        "{name}: expected {expected}, got {}",
        quote_value(v)
    ))
}

/// `": "` and the start of a body, or nothing for an empty one.
fn quote_body(body: &[u8]) -> String {
    let text = shorten(String::from_utf8_lossy(body).trim());
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// The start of a JSON value.
fn quote_value(v: &Value) -> String {
    shorten(&v.to_string())
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= QUOTED_CHARS {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(QUOTED_CHARS).collect();
    short.push_str("...");
    short
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper::Response;
    use hyper_util::rt::TokioIo;
    use std::sync::Arc;
    use tokio::net::TcpListener;

    const ACCOUNT_0: &str = "0x90f8bf6a479f320ead074411a4b0e7944ea8c9c1";
    const ACCOUNT_1: &str = "0xffcf8fdee72ac11b5c542428b35eef5769c409f0";
    const TX_HASH: &str = "0x6b7f1f6c3a3d4e5f60718293a4b5c6d7e8f90112233445566778899aabbccdde";
    const BLOCK_HASH: &str = "0x1c2b3a4958677685a4b3c2d1e0f0e1d2c3b4a59687766554433221100ffeeddc";

    /// A transfer of 1 ETH as ganache shows it in a block.
    fn ganache_transfer() -> Value {
        json!({
            "hash": TX_HASH,
            "type": "0x0",
            "nonce": "0x0",
            "blockHash": BLOCK_HASH,
            "blockNumber": "0x5",
            "transactionIndex": "0x0",
            "from": ACCOUNT_0,
            "to": ACCOUNT_1,
            "value": "0xde0b6b3a7640000",
            "gas": "0x5208",
            "gasPrice": "0x77359400",
            "input": "0x",
            "v": "0xa95",
            "r": "0x6a1b8bd1e6c6d2a1a8a3f0b6b0e9e4d9c2b7a6f5e4d3c2b1a0f9e8d7c6b5a493",
            "s": "0x1f2e3d4c5b6a79887766554433221100ffeeddccbbaa99887766554433221100"
        })
    }

    /// A contract creation (no `to`) with some input, as ganache shows it in a block.
    fn ganache_creation() -> Value {
        json!({
            "hash": BLOCK_HASH,
            "type": "0x0",
            "nonce": "0x1",
            "blockHash": BLOCK_HASH,
            "blockNumber": "0x5",
            "transactionIndex": "0x1",
            "from": ACCOUNT_1,
            "to": null,
            "value": "0x0",
            "gas": "0x1e8480",
            "gasPrice": "0x77359400",
            "input": "0x6080604052348015600f57600080fd5b50",
            "v": "0xa96",
            "r": "0x11",
            "s": "0x22"
        })
    }

    fn transfer_info() -> TxInfo {
        TxInfo {
            hash: eth::parse_h256(TX_HASH).unwrap(),
            from: eth::parse_address(ACCOUNT_0).unwrap(),
            to: Some(eth::parse_address(ACCOUNT_1).unwrap()),
            value: 1_000_000_000_000_000_000,
            block_number: Some(5),
        }
    }

    #[test]
    fn response_result() {
        let body = br#"{"jsonrpc":"2.0","id":7,"result":"0x539"}"#;
        assert_eq!(parse_response(body, 7).unwrap(), json!("0x539"));
        let body = br#"{"jsonrpc":"2.0","id":8,"result":null}"#;
        assert_eq!(parse_response(body, 8).unwrap(), Value::Null);
    }

    #[test]
    fn response_error_object() {
        let body = br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"nonce too low"}}"#;
        let error = parse_response(body, 1).unwrap_err();
        assert_eq!(
            error,
            RpcError::Node {
                code: -32000,
                message: "nonce too low".into()
            }
        );
        assert!(!error.is_transport());
        assert!(error.to_string().contains("nonce too low"), "{error}");
        // With a null id, and without a message.
        let body = br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700}}"#;
        assert!(matches!(
            parse_response(body, 1),
            Err(RpcError::Node { code: -32700, .. })
        ));
    }

    #[test]
    fn responses_that_are_not_json_rpc() {
        for body in [
            "<html>Bad Gateway</html>",
            "",
            "[1, 2]",
            r#"{"jsonrpc":"2.0","id":2,"result":"0x1"}"#,
            r#"{"jsonrpc":"2.0","id":"1","result":"0x1"}"#,
            r#"{"jsonrpc":"2.0","result":"0x1"}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
        ] {
            let error = parse_response(body.as_bytes(), 1).unwrap_err();
            assert!(error.is_transport(), "{body}: {error}");
        }
        let error = parse_response(b"<html>Bad Gateway</html>", 1).unwrap_err();
        assert!(error.to_string().contains("Bad Gateway"), "{error}");
    }

    #[test]
    fn receipts() {
        let mined = json!({
            "transactionHash": TX_HASH,
            "transactionIndex": "0x0",
            "blockNumber": "0x5",
            "blockHash": BLOCK_HASH,
            "from": ACCOUNT_0,
            "to": ACCOUNT_1,
            "cumulativeGasUsed": "0x5208",
            "gasUsed": "0x5208",
            "contractAddress": null,
            "logs": [],
            "logsBloom": format!("0x{}", "0".repeat(512)),
            "status": "0x1",
            "effectiveGasPrice": "0x77359400",
            "type": "0x0"
        });
        assert_eq!(
            parse_receipt(&mined).unwrap(),
            Some(Receipt {
                block_number: 5,
                success: true
            })
        );
        let mut reverted = mined.clone();
        reverted["status"] = json!("0x0");
        assert_eq!(
            parse_receipt(&reverted).unwrap(),
            Some(Receipt {
                block_number: 5,
                success: false
            })
        );
        assert_eq!(parse_receipt(&Value::Null).unwrap(), None);
        let mut pending = mined.clone();
        pending["blockNumber"] = Value::Null;
        assert_eq!(parse_receipt(&pending).unwrap(), None);

        let mut no_status = mined.clone();
        no_status.as_object_mut().unwrap().remove("status");
        assert!(matches!(
            parse_receipt(&no_status),
            Err(RpcError::Malformed(_))
        ));
        let mut odd_status = mined;
        odd_status["status"] = json!("0x2");
        assert!(matches!(
            parse_receipt(&odd_status),
            Err(RpcError::Malformed(_))
        ));
        assert!(matches!(
            parse_receipt(&json!("0x1")),
            Err(RpcError::Malformed(_))
        ));
    }

    #[test]
    fn transactions() {
        assert_eq!(parse_tx(&ganache_transfer()).unwrap(), transfer_info());
        let creation = parse_tx(&ganache_creation()).unwrap();
        assert_eq!(creation.to, None);
        assert_eq!(creation.value, 0);
        assert_eq!(creation.from, eth::parse_address(ACCOUNT_1).unwrap());

        let mut pending = ganache_transfer();
        pending["blockNumber"] = Value::Null;
        pending["blockHash"] = Value::Null;
        pending["transactionIndex"] = Value::Null;
        assert_eq!(parse_tx(&pending).unwrap().block_number, None);

        let mut bad_value = ganache_transfer();
        bad_value["value"] = json!(1000);
        let error = parse_tx(&bad_value).unwrap_err();
        assert!(error.to_string().contains("transaction.value"), "{error}");
        let mut bad_from = ganache_transfer();
        bad_from["from"] = json!("0x1234");
        assert!(matches!(parse_tx(&bad_from), Err(RpcError::Malformed(_))));
        let mut no_hash = ganache_transfer();
        no_hash.as_object_mut().unwrap().remove("hash");
        assert!(matches!(parse_tx(&no_hash), Err(RpcError::Malformed(_))));
    }

    #[test]
    fn blocks() {
        let block = json!({
            "number": "0x5",
            "hash": BLOCK_HASH,
            "parentHash": TX_HASH,
            "mixHash": TX_HASH,
            "nonce": "0x0000000000000000",
            "sha3Uncles": TX_HASH,
            "logsBloom": format!("0x{}", "0".repeat(512)),
            "transactionsRoot": TX_HASH,
            "stateRoot": TX_HASH,
            "receiptsRoot": TX_HASH,
            "miner": "0x0000000000000000000000000000000000000000",
            "difficulty": "0x1",
            "totalDifficulty": "0x6",
            "extraData": "0x",
            "size": "0x3e8",
            "gasLimit": "0x6691b7",
            "gasUsed": "0x5208",
            "timestamp": "0x65a1b2c3",
            "transactions": [ganache_transfer(), ganache_creation()],
            "uncles": [],
            "baseFeePerGas": "0x7"
        });
        let parsed = parse_block(&block).unwrap().unwrap();
        assert_eq!(parsed.number, 5);
        assert_eq!(parsed.hash, eth::parse_h256(BLOCK_HASH).unwrap());
        assert_eq!(parsed.transactions.len(), 2);
        assert_eq!(parsed.transactions[0], transfer_info());
        assert_eq!(parsed.transactions[1].to, None);

        assert_eq!(parse_block(&Value::Null).unwrap(), None);
        let mut empty = block.clone();
        empty["transactions"] = json!([]);
        assert!(parse_block(&empty)
            .unwrap()
            .unwrap()
            .transactions
            .is_empty());
        // Hashes only (the block was asked for without full transactions).
        let mut hashes = block.clone();
        hashes["transactions"] = json!([TX_HASH]);
        assert!(matches!(parse_block(&hashes), Err(RpcError::Malformed(_))));
        let mut no_transactions = block;
        no_transactions
            .as_object_mut()
            .unwrap()
            .remove("transactions");
        assert!(matches!(
            parse_block(&no_transactions),
            Err(RpcError::Malformed(_))
        ));
    }

    #[test]
    fn quantity_shapes() {
        assert_eq!(as_u64(&json!("0x0"), "n").unwrap(), 0);
        assert_eq!(as_u64(&json!("0xffffffffffffffff"), "n").unwrap(), u64::MAX);
        assert!(matches!(
            as_u64(&json!("0x10000000000000000"), "n"),
            Err(RpcError::Malformed(_))
        ));
        assert!(matches!(
            as_u64(&json!(5), "n"),
            Err(RpcError::Malformed(_))
        ));
        assert!(matches!(
            as_quantity(&json!("5"), "n"),
            Err(RpcError::Malformed(_))
        ));
        assert!(matches!(
            as_quantity(&Value::Null, "n"),
            Err(RpcError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn urls() {
        let url = |s: &str| url::Url::parse(s).unwrap();
        let timeout = Duration::from_secs(1);
        assert!(Rpc::new(url("http://127.0.0.1:8545"), timeout).is_ok());
        let rpc = Rpc::new(url("http://localhost:8545/v3/secret-key"), timeout).unwrap();
        let shown = format!("{rpc:?}");
        assert!(
            shown.contains("http://localhost:8545") && !shown.contains("secret"),
            "{shown}"
        );
        let error = Rpc::new(url("ftp://127.0.0.1:8545"), timeout).unwrap_err();
        assert!(error.to_string().contains("engine.rpc_url"), "{error}");
        assert!(Rpc::new(url("http://user:pass@127.0.0.1:8545"), timeout).is_err());
    }

    fn reply(request: &Value, result: Value) -> (StatusCode, String) {
        let response = json!({"jsonrpc": "2.0", "id": request["id"], "result": result});
        (StatusCode::OK, response.to_string())
    }

    type Answer = Arc<dyn Fn(&Value) -> (StatusCode, String) + Send + Sync>;

    /// An HTTP/1.1 server on a local port answering each POST with `answer(request body)`.
    async fn fake_node(
        answer: impl Fn(&Value) -> (StatusCode, String) + Send + Sync + 'static,
    ) -> url::Url {
        let answer: Answer = Arc::new(answer);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let answer = answer.clone();
                let service = service_fn(move |request: Request<Incoming>| {
                    let answer = answer.clone();
                    async move {
                        let body = request.into_body().collect().await?.to_bytes();
                        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let (status, text) = answer(&request);
                        let response = Response::builder()
                            .status(status)
                            .header(CONTENT_TYPE, "application/json")
                            .body(Full::new(Bytes::from(text)))
                            .unwrap();
                        Ok::<_, hyper::Error>(response)
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        url::Url::parse(&format!("http://{address}")).unwrap()
    }

    #[tokio::test]
    async fn calls_reach_the_node() {
        let url = fake_node(|request| {
            let params = &request["params"];
            match request["method"].as_str().unwrap_or("") {
                "eth_chainId" if params == &json!([]) => reply(request, json!("0x539")),
                "eth_getBalance" if params == &json!([ACCOUNT_0, "latest"]) => {
                    reply(request, json!("0xde0b6b3a7640000"))
                }
                "eth_getTransactionCount" if params == &json!([ACCOUNT_0, "pending"]) => {
                    reply(request, json!("0x3"))
                }
                "eth_sendRawTransaction" if params == &json!(["0xf86c"]) => {
                    reply(request, json!(TX_HASH))
                }
                "eth_getTransactionReceipt" if params == &json!([TX_HASH]) => {
                    reply(request, Value::Null)
                }
                "eth_getTransactionByHash" if params == &json!([TX_HASH]) => {
                    reply(request, ganache_transfer())
                }
                "eth_getBlockByNumber" if params == &json!(["0x5", true]) => {
                    let block = json!({
                        "number": "0x5",
                        "hash": BLOCK_HASH,
                        "transactions": [ganache_transfer()]
                    });
                    reply(request, block)
                }
                "eth_getBlockByNumber" => reply(request, Value::Null),
                _ => {
                    let error = json!({"code": -32601, "message": "method not found"});
                    let response = json!({"jsonrpc": "2.0", "id": request["id"], "error": error});
                    (StatusCode::OK, response.to_string())
                }
            }
        })
        .await;
        let rpc = Rpc::new(url, Duration::from_secs(5)).unwrap();
        let account = eth::parse_address(ACCOUNT_0).unwrap();
        let hash = eth::parse_h256(TX_HASH).unwrap();
        assert_eq!(rpc.chain_id().await.unwrap(), 1337);
        assert_eq!(
            rpc.balance(&account).await.unwrap(),
            1_000_000_000_000_000_000
        );
        assert_eq!(rpc.transaction_count(&account, "pending").await.unwrap(), 3);
        assert_eq!(rpc.send_raw_transaction(&[0xf8, 0x6c]).await.unwrap(), hash);
        assert_eq!(rpc.receipt(&hash).await.unwrap(), None);
        assert_eq!(rpc.transaction(&hash).await.unwrap(), Some(transfer_info()));
        let block = rpc.block_with_transactions(5).await.unwrap().unwrap();
        assert_eq!(block.transactions, [transfer_info()]);
        assert_eq!(rpc.block_with_transactions(6).await.unwrap(), None);
        let error = rpc.gas_price().await.unwrap_err();
        assert_eq!(
            error,
            RpcError::Node {
                code: -32601,
                message: "method not found".into()
            }
        );
    }

    #[tokio::test]
    async fn http_errors_are_transport_errors() {
        let url = fake_node(|_| (StatusCode::BAD_GATEWAY, "upstream down".into())).await;
        let rpc = Rpc::new(url, Duration::from_secs(5)).unwrap();
        let error = rpc.block_number().await.unwrap_err();
        assert!(error.is_transport(), "{error}");
        let text = error.to_string();
        assert!(
            text.contains("502") && text.contains("upstream down"),
            "{text}"
        );
        assert!(text.contains("eth_blockNumber"), "{text}");
    }

    #[tokio::test]
    async fn a_silent_node_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let url = url::Url::parse(&format!("http://{address}")).unwrap();
        let rpc = Rpc::new(url, Duration::from_millis(200)).unwrap();
        let error = rpc.chain_id().await.unwrap_err();
        assert!(error.is_transport(), "{error}");
        assert!(
            error.to_string().contains("no answer within 200 ms"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_transport_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let url = url::Url::parse(&format!("http://{address}")).unwrap();
        let rpc = Rpc::new(url, Duration::from_secs(5)).unwrap();
        assert!(rpc.chain_id().await.unwrap_err().is_transport());
    }
}
