'use strict'
// Receiving: @interledger/pay 0.2.2 pays a local account of our connector. It resolves the
// payment pointer itself (SPSP_BASE has no path: it asks /.well-known/open-payments, which we
// answer 404, and /.well-known/pay, our default account), probes the destination asset with an
// empty ConnectionNewAddress and the path's rate with unfulfillable packets, quotes, and pays
// AMOUNT base units of the source asset. What its receipt says was delivered must be what our
// admin API says was credited.
//
// Environment: PAYER_BTP, PAYER_TOKEN, SPSP_BASE (http://HOST:PORT), ADMIN_URL, ACCOUNT, AMOUNT;
// PAY_MS, the longest the payment may take (default 60000; scripts/bench/pay.sh raises it).

const { quote } = require('@interledger/pay')
const { env, btpClient, withTimeout, retryUntil, log, run, balance } = require('./lib')

const payMs = Number(process.env.PAY_MS || 60000)

run(async () => {
  const amount = BigInt(env('AMOUNT'))
  const account = env('ACCOUNT')
  const admin = env('ADMIN_URL')
  const before = await balance(admin, account)
  const plugin = btpClient(env('PAYER_BTP'), 'payer', env('PAYER_TOKEN'))
  await withTimeout(plugin.connect(), 15000, 'payer plugin connects')
  try {
    // The source asset comes from the plugin over IL-DCP: scale 9 here.
    const q = await retryUntil(async () => {
      const q = await withTimeout(quote({
        plugin,
        paymentPointer: env('SPSP_BASE'),
        amountToSend: (Number(amount) / 1e9).toFixed(9)
      }), 20000, 'quote')
      return q
    }, 45000, 'quote')
    log(`quote: ${q.sourceAccount.assetCode}/${q.sourceAccount.assetScale} -> ` +
      `${q.destinationAccount.assetCode}/${q.destinationAccount.assetScale} at ${q.destinationAccount.ilpAddress}, ` +
      `rate [${q.estimatedExchangeRate[0]}, ${q.estimatedExchangeRate[1]}], min ${q.minExchangeRate}, ` +
      `max source ${q.maxSourceAmount}, min delivery ${q.minDeliveryAmount}`)
    const receipt = await withTimeout(q.pay(), payMs, 'pay')
    if (receipt.error) throw new Error(`payment failed: ${receipt.error}`)
    const scale = q.destinationAccount.assetScale
    const delivered = BigInt(receipt.amountDelivered.shiftedBy(scale).toFixed(0))
    const sent = BigInt(receipt.amountSent.shiftedBy(q.sourceAccount.assetScale).toFixed(0))
    const credited = before - await balance(admin, account)
    log(`ok, sent ${sent}, delivered ${delivered}, credited ${credited}`)
    if (credited !== delivered) throw new Error(`credited ${credited}, delivered ${delivered}`)
    if (sent !== amount) throw new Error(`sent ${sent} of ${amount}`)
  } finally {
    await withTimeout(plugin.disconnect(), 2000, 'disconnect').catch(() => {})
  }
}, payMs + 60000)
