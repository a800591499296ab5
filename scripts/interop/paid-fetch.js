'use strict'
// Paid HTTP, server side: ilp-fetch 1.4.0 (the client under ilp-curl) pays our paid proxy.
// The upstream is a plain Node HTTP server started here; our proxy ([paid_http], POST /upload
// priced PRICE units of the local account shop) sits in front of it. ilp-fetch sends the
// request with its random 16-byte Pay-Token, gets 402 with `Pay: interledger-psk2 ... PRICE`,
// quotes with an unfulfillable PSK2 request, pays one PSK2 request with the token as data and
// asks again. The upstream must see the upload once; our admin API's token list must account
// for every unit shop was paid (the token's balance plus what it spent), and the Pay-Balance
// ilp-fetch got must be that balance.
//
// Environment: PAYER_BTP, PAYER_TOKEN, PROXY_URL, UPSTREAM_PORT, ADMIN_URL, PRICE.

const http = require('http')
const ilpFetch = require('ilp-fetch')
const { env, btpClient, withTimeout, log, run, balance } = require('./lib')

run(async () => {
  const price = BigInt(env('PRICE'))
  const admin = env('ADMIN_URL')
  const seen = []
  const upstream = http.createServer((req, res) => {
    let body = ''
    req.on('data', (d) => { body += d })
    req.on('end', () => {
      seen.push({ method: req.method, url: req.url, body, token: req.headers['pay-token'] })
      res.setHeader('content-type', 'text/plain')
      res.end(`stored ${req.method} ${req.url} ${body}`)
    })
  })
  await new Promise((resolve) => upstream.listen(Number(env('UPSTREAM_PORT')), '127.0.0.1', resolve))
  const plugin = btpClient(env('PAYER_BTP'), 'payer', env('PAYER_TOKEN'))
  try {
    await withTimeout(plugin.connect(), 15000, 'payer plugin connects')
    const res = await withTimeout(ilpFetch(`${env('PROXY_URL')}/upload`, {
      method: 'POST',
      body: 'picture',
      headers: { 'content-type': 'text/plain' },
      maxPrice: (price * 2n).toString(),
      plugin
    }), 30000, 'ilp-fetch')
    const text = await res.text()
    log(`ilp-fetch: ${res.status} ${JSON.stringify(text)}, Pay-Balance ${res.headers.get('pay-balance')}`)
    if (res.status !== 200) throw new Error(`the paid request answered ${res.status}`)
    if (text !== 'stored POST /v1/upload picture') throw new Error(`the upstream answered ${text}`)
    if (seen.length !== 1) throw new Error(`the upstream saw ${seen.length} requests`)
    if (seen[0].token) throw new Error('the Pay-Token reached the upstream')

    const tokens = await (await fetch(`${admin}/accounts/shop/tokens`)).json()
    const paid = -(await balance(admin, 'shop'))
    log(`our tokens: ${JSON.stringify(tokens)}; shop was paid ${paid}`)
    if (tokens.tokens.length !== 1) throw new Error('expected one token')
    const held = BigInt(tokens.tokens[0].balance)
    const spent = BigInt(tokens.spent)
    if (spent !== price) throw new Error(`the token spent ${spent}, the price is ${price}`)
    if (held + spent !== paid) throw new Error(`tokens ${held} + ${spent} != paid ${paid}`)
    if (res.headers.get('pay-balance') !== held.toString()) throw new Error('Pay-Balance is not the token balance')
    log(`ok, sent ${paid}: the token holds ${held} after paying ${spent}`)
  } finally {
    await withTimeout(plugin.disconnect(), 2000, 'disconnect').catch(() => {})
    upstream.close()
  }
})
