'use strict'
// Helpers shared by the interop scenarios (run by ../interop.sh): bounded waits, JS plugins,
// and one STREAM payment from a sender plugin to a receiver plugin.

const { createServer, createConnection } = require('ilp-protocol-stream')
const BtpPlugin = require('ilp-plugin-btp')

function log (...args) {
  console.log(`[${new Date().toISOString()}]`, ...args)
}

/** Rejects with `what` when `promise` has not settled within `ms`. */
function withTimeout (promise, ms, what) {
  let timer
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

function env (name) {
  const value = process.env[name]
  if (!value) throw new Error(`environment variable ${name} is required`)
  return value
}

/** A BTP client plugin for `ws://HOST:PORT` authenticating as `username`/`token`. */
function btpClient (wsUrl, username, token) {
  const url = new URL(wsUrl)
  const server = `btp+ws://${encodeURIComponent(username)}:${encodeURIComponent(token)}@${url.host}${url.pathname === '/' ? '' : url.pathname}`
  return new BtpPlugin({ server })
}

async function connect (plugin, what, ms = 15000) {
  await withTimeout(plugin.connect(), ms, `${what} connects`)
  log(`${what} connected`)
}

/**
 * Sends `amount` over one STREAM connection from a plugin made by `sender` to a STREAM server
 * on a plugin made by `receiver` (each learns its address over IL-DCP). The plugins are made
 * and connected here and disconnected at the end (ilp-protocol-stream disconnects them when its
 * connection or server closes, so they serve one payment). Resolves with the sender's and the
 * receiver's totals once the receiver has the whole amount; throws otherwise.
 */
async function streamPayment ({ sender, receiver, amount, ms = 30000, label = 'payment' }) {
  const senderPlugin = sender()
  const receiverPlugin = receiver()
  try {
    await connect(senderPlugin, `${label}: sender plugin`, ms)
    await connect(receiverPlugin, `${label}: receiver plugin`, ms)
    return await streamOnce({ senderPlugin, receiverPlugin, amount, ms, label })
  } finally {
    await withTimeout(Promise.all([senderPlugin.disconnect(), receiverPlugin.disconnect()]), 2000, `${label}: disconnect`).catch(() => {})
  }
}

async function streamOnce ({ senderPlugin, receiverPlugin, amount, ms, label }) {
  const server = await withTimeout(createServer({ plugin: receiverPlugin }), ms, `${label}: STREAM server (IL-DCP on the receiver)`)
  log(`${label}: receiver address ${server.generateAddressAndSecret().destinationAccount.split('.').slice(0, -1).join('.')}`)
  let serverConnection
  // The connection's totalReceived is brought up to date after its streams emit 'money', so
  // the streams' amounts are added up here.
  let got = 0n
  const received = new Promise((resolve) => {
    server.on('connection', (conn) => {
      serverConnection = conn
      conn.on('stream', (stream) => {
        stream.setReceiveMax(Infinity)
        stream.on('money', (received) => {
          got += BigInt(received)
          if (got >= BigInt(amount)) resolve()
        })
      })
    })
  })
  const { destinationAccount, sharedSecret } = server.generateAddressAndSecret()
  let connection
  let result
  try {
    connection = await withTimeout(
      createConnection({ plugin: senderPlugin, destinationAccount, sharedSecret }),
      ms, `${label}: STREAM client connects to ${destinationAccount} (IL-DCP on the sender, rate probe)`)
    const stream = connection.createStream()
    await withTimeout(stream.sendTotal(amount), ms, `${label}: sendTotal(${amount})`)
    await withTimeout(received, ms, `${label}: the receiver gets ${amount}`)
    await new Promise((resolve) => setImmediate(resolve))
    result = {
      totalSent: connection.totalSent,
      totalDelivered: connection.totalDelivered,
      totalReceived: serverConnection.totalReceived
    }
  } finally {
    // Both ends let go of their plugins' handlers, so a retry can register its own.
    if (connection) {
      await withTimeout(connection.end(), 2000, `${label}: close the sender's connection`).catch(() => {})
    }
    await withTimeout(server.close(), 2000, `${label}: close the STREAM server`).catch(() => {})
  }
  if (result.totalReceived !== String(amount)) {
    throw new Error(`${label}: the receiver got ${result.totalReceived}, expected ${amount}`)
  }
  log(`${label}: ok, sent ${result.totalSent}, delivered ${result.totalDelivered}, received ${result.totalReceived}`)
  return result
}

/**
 * Retries `attempt` until it resolves or `ms` have passed (routes learned over CCP take a
 * broadcast round to arrive); the last error is thrown.
 */
async function retryUntil (attempt, ms, what, pauseMs = 1000) {
  const deadline = Date.now() + ms
  let lastError
  for (let n = 1; Date.now() < deadline; n++) {
    try {
      return await attempt(n)
    } catch (e) {
      lastError = e
      log(`${what}: attempt ${n} failed: ${e.message}`)
      await new Promise((resolve) => setTimeout(resolve, pauseMs))
    }
  }
  throw new Error(`${what}: gave up after ${ms} ms: ${lastError && lastError.message}`)
}

/** Runs `main`, exits 0 on success and 1 on failure or after `ms`, whatever is still open. */
function run (main, ms = 120000) {
  const timer = setTimeout(() => {
    console.error(`FAIL: the scenario did not finish in ${ms} ms`)
    process.exit(1)
  }, ms)
  main().then(() => {
    clearTimeout(timer)
    log('PASS')
    process.exit(0)
  }, (e) => {
    console.error('FAIL:', e && e.stack ? e.stack : e)
    process.exit(1)
  })
}

/** The balance our admin API at `admin` shows for `account`, as a BigInt. */
async function balance (admin, account) {
  const res = await fetch(`${admin}/accounts/${account}`)
  if (res.status !== 200) throw new Error(`admin API: ${res.status}`)
  return BigInt((await res.json()).balance)
}

module.exports = { log, withTimeout, env, btpClient, connect, streamPayment, retryUntil, run, balance }
