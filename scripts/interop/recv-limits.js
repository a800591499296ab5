'use strict'
// Receiving at a limit: the JS ilp-protocol-stream client tries to pay AMOUNT to a local account
// of ours whose receiver maximum (MAXIMUM) is lower. The payment must stop with an error (our
// F99 replies tell the stream how much room is left, then close it), not hang or retry for
// ever; what the client's library says was delivered must be what was credited, at most
// MAXIMUM, and nothing is credited past it.
//
// Environment: PAYER_BTP, PAYER_TOKEN, SPSP_URL, ADMIN_URL, ACCOUNT, AMOUNT, MAXIMUM.

const { createConnection } = require('ilp-protocol-stream')
const { env, btpClient, withTimeout, log, run, balance } = require('./lib')

run(async () => {
  const amount = BigInt(env('AMOUNT'))
  const maximum = BigInt(env('MAXIMUM'))
  const account = env('ACCOUNT')
  const admin = env('ADMIN_URL')
  const res = await fetch(env('SPSP_URL'), { headers: { Accept: 'application/spsp4+json' } })
  if (res.status !== 200) throw new Error(`SPSP: ${res.status} ${await res.text()}`)
  const spsp = await res.json()
  const plugin = btpClient(env('PAYER_BTP'), 'payer', env('PAYER_TOKEN'))
  await withTimeout(plugin.connect(), 15000, 'payer plugin connects')
  let connection
  try {
    connection = await withTimeout(createConnection({
      plugin,
      destinationAccount: spsp.destination_account,
      sharedSecret: Buffer.from(spsp.shared_secret, 'base64')
    }), 15000, 'STREAM connection')
    const stream = connection.createStream()
    let failure
    try {
      await withTimeout(stream.sendTotal(amount.toString()), 30000, `sendTotal(${amount})`)
    } catch (e) {
      failure = e
    }
    if (!failure) throw new Error(`sendTotal(${amount}) succeeded past the maximum ${maximum}`)
    if (/timed out/.test(failure.message)) throw new Error(`the payment did not stop: ${failure.message}`)
    log(`the payment stopped: ${failure.message}`)
    const delivered = BigInt(connection.totalDelivered)
    const credited = -await balance(admin, account)
    log(`ok, sent ${connection.totalSent}, delivered ${delivered}, credited ${credited} (maximum ${maximum})`)
    if (credited !== delivered) throw new Error(`credited ${credited}, delivered ${delivered}`)
    if (credited > maximum) throw new Error(`credited ${credited} past the maximum ${maximum}`)
    if (credited === 0n) throw new Error('nothing was credited')
  } finally {
    if (connection) await withTimeout(connection.destroy(), 2000, 'close').catch(() => {})
    await withTimeout(plugin.disconnect(), 2000, 'disconnect').catch(() => {})
  }
})
