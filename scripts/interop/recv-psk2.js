'use strict'
// Receiving: ilp-protocol-psk2 0.5.0 pays a local account of our connector over PSK2. Its
// credentials come from our SPSP server as application/spsp+json (the older SPSP, with
// asset_info). It quotes with an unfulfillable request (the receiver's error packet tells what
// would arrive), sends ten requests with a minimum destination amount, and one legacy chunk
// (sendSingleChunk, the format receivers of 0.3-0.5 still take). The amounts the responses
// report must add up to what our admin API says was credited.
//
// Environment: PAYER_BTP, PAYER_TOKEN, SPSP_URL, ADMIN_URL, ACCOUNT.

const crypto = require('crypto')
const { sendRequest, sendSingleChunk } = require('ilp-protocol-psk2')
const { env, btpClient, withTimeout, retryUntil, log, run, balance } = require('./lib')

run(async () => {
  const account = env('ACCOUNT')
  const admin = env('ADMIN_URL')
  const before = await balance(admin, account)
  const res = await fetch(env('SPSP_URL'), { headers: { Accept: 'application/spsp+json' } })
  if (res.status !== 200) throw new Error(`SPSP: ${res.status} ${await res.text()}`)
  if (!res.headers.get('content-type').startsWith('application/spsp+json')) {
    throw new Error(`SPSP: content-type ${res.headers.get('content-type')}`)
  }
  const spsp = await res.json()
  log(`SPSP: ${spsp.destination_account}, asset ${JSON.stringify(spsp.asset_info)}`)
  const destinationAccount = spsp.destination_account
  const sharedSecret = Buffer.from(spsp.shared_secret, 'base64')

  const plugin = btpClient(env('PAYER_BTP'), 'payer', env('PAYER_TOKEN'))
  await withTimeout(plugin.connect(), 15000, 'payer plugin connects')
  try {
    // The quote: through the JS connector the route to us arrives with a CCP broadcast.
    const quote = await retryUntil(async () => {
      const q = await withTimeout(sendRequest(plugin, {
        destinationAccount,
        sharedSecret,
        sourceAmount: '1000',
        unfulfillableCondition: crypto.randomBytes(32)
      }), 15000, 'quote')
      // A 0.5.0 receiver checks the condition first: F05, with an error packet telling the
      // amount that arrived (what the quote reads). F02 and T-codes mean no route yet.
      if (q.fulfilled || q.code !== 'F05') throw new Error(`quote answered ${q.code}: ${q.message}`)
      return q
    }, 45000, 'quote')
    log(`quote: 1000 -> ${quote.destinationAmount}`)
    if (quote.destinationAmount.toString() !== '1000') throw new Error('the quote is not 1000')

    let reported = 0n
    for (let i = 0; i < 10; i++) {
      const r = await withTimeout(sendRequest(plugin, {
        destinationAccount,
        sharedSecret,
        sourceAmount: '10000',
        minDestinationAmount: '10000'
      }), 15000, `request ${i}`)
      if (!r.fulfilled) throw new Error(`request ${i} rejected: ${r.code} ${r.message}`)
      reported += BigInt(r.destinationAmount.toString())
    }
    // Too little arrives for what the request asks: refused with what would have arrived.
    const short = await withTimeout(sendRequest(plugin, {
      destinationAccount,
      sharedSecret,
      sourceAmount: '100',
      minDestinationAmount: '101'
    }), 15000, 'short request')
    if (short.fulfilled || short.destinationAmount.toString() !== '100') {
      throw new Error(`a short request was not refused with 100: ${JSON.stringify(short)}`)
    }
    const chunk = await withTimeout(sendSingleChunk(plugin, {
      destinationAccount,
      sharedSecret,
      sourceAmount: '5000',
      minDestinationAmount: '5000'
    }), 15000, 'legacy chunk')
    reported += BigInt(chunk.destinationAmount)
    const credited = before - await balance(admin, account)
    log(`ok, sent 106000 in 13 requests, the responses report ${reported} arrived, credited ${credited}`)
    if (credited !== reported || reported !== 105000n) {
      throw new Error(`credited ${credited}, the responses report ${reported}, expected 105000`)
    }
  } finally {
    await withTimeout(plugin.disconnect(), 2000, 'disconnect').catch(() => {})
  }
})
