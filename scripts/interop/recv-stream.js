'use strict'
// Receiving: the JS ilp-protocol-stream client pays a local account of our connector. It asks
// our SPSP server for credentials (with its own receipt nonce and secret), connects over BTP as
// a child of ours (or of the JS connector peered with ours), sends AMOUNT in packets of at most
// the payer's max_packet_amount, checks the last STREAM receipt with the library's own
// verifyReceipt, and reads the account's balance from our admin API: what the sender's library
// says was delivered must be what was credited.
//
// Environment: PAYER_BTP (ws://HOST:PORT of the sender's connector), PAYER_TOKEN, SPSP_URL
// (http://HOST:PORT/<account>), ADMIN_URL (our admin API), ACCOUNT, AMOUNT; FX=1 when the
// payer's asset is not the account's (then what arrives is not AMOUNT).

const crypto = require('crypto')
const { createConnection, verifyReceipt } = require('ilp-protocol-stream')
const { env, btpClient, withTimeout, retryUntil, log, run, balance } = require('./lib')

run(async () => {
  const amount = BigInt(env('AMOUNT'))
  const account = env('ACCOUNT')
  const admin = env('ADMIN_URL')
  const before = await balance(admin, account)
  const nonce = crypto.randomBytes(16)
  const secret = crypto.randomBytes(32)
  const res = await fetch(env('SPSP_URL'), {
    headers: {
      Accept: 'application/spsp4+json, application/spsp+json',
      'Receipt-Nonce': nonce.toString('base64'),
      'Receipt-Secret': secret.toString('base64')
    }
  })
  if (res.status !== 200) throw new Error(`SPSP: ${res.status} ${await res.text()}`)
  if (!res.headers.get('content-type').startsWith('application/spsp4+json')) {
    throw new Error(`SPSP: content-type ${res.headers.get('content-type')}`)
  }
  const spsp = await res.json()
  if (spsp.receipts_enabled !== true) throw new Error('SPSP: receipts_enabled is not true')
  log(`SPSP: ${spsp.destination_account}`)

  const plugin = btpClient(env('PAYER_BTP'), 'payer', env('PAYER_TOKEN'))
  await withTimeout(plugin.connect(), 15000, 'payer plugin connects')
  let connection
  try {
    // Through the JS connector the route to us arrives with a CCP broadcast: retry until then.
    connection = await retryUntil(() => withTimeout(createConnection({
      plugin,
      destinationAccount: spsp.destination_account,
      sharedSecret: Buffer.from(spsp.shared_secret, 'base64'),
      receiptNonce: nonce,
      receiptSecret: secret
    }), 15000, 'STREAM connection'), 45000, 'connect to our receiver')
    log(`connected: destination asset ${connection.destinationAssetCode}/${connection.destinationAssetScale}`)
    const stream = connection.createStream()
    await withTimeout(stream.sendTotal(amount.toString()), 60000, `sendTotal(${amount})`)
    const delivered = BigInt(connection.totalDelivered)
    if (!stream.receipt) throw new Error('no STREAM receipt came back')
    const receipt = verifyReceipt(stream.receipt, secret)
    if (!receipt.nonce.equals(nonce)) throw new Error('the receipt carries another nonce')
    if (BigInt(receipt.totalReceived.toString()) !== delivered) {
      throw new Error(`the receipt says ${receipt.totalReceived}, the sender saw ${delivered} delivered`)
    }
    const credited = before - await balance(admin, account)
    log(`ok, sent ${connection.totalSent}, delivered ${delivered}, credited ${credited}, receipt total ${receipt.totalReceived}`)
    if (credited !== delivered) throw new Error(`credited ${credited}, delivered ${delivered}`)
    // One asset, no spread: everything sent arrives (an exchange-rate path sets FX=1).
    if (process.env.FX !== '1' && delivered !== amount) throw new Error(`delivered ${delivered} of ${amount}`)
    if (delivered === 0n) throw new Error('nothing was delivered')
  } finally {
    if (connection) await withTimeout(connection.end(), 2000, 'close').catch(() => {})
    await withTimeout(plugin.disconnect(), 2000, 'disconnect').catch(() => {})
  }
})
