'use strict'
// Scenario 3: JS ilp-plugin-http sender -> our connector -> JS ilp-plugin-http receiver, over
// sync ILP-over-HTTP, carrying one STREAM payment. Each plugin is a child account of ours
// (link.type = "http") and learns its address from us over IL-DCP (a peer.config Prepare POSTed
// to us). Our connector POSTs to each plugin's listener on 127.0.0.1.
//
// Environment: OUR_HTTP (http://HOST:PORT), SENDER_PORT, RECEIVER_PORT, AMOUNT (default 10000),
// HTTP2=true to POST to us over HTTP/2 with prior knowledge (h2c).

// ilp-plugin-http listens on every interface; keep its listeners on loopback.
const Koa = require('koa')
const listen = Koa.prototype.listen
Koa.prototype.listen = function (port) { return listen.call(this, port, '127.0.0.1') }

const PluginHttp = require('ilp-plugin-http')
const { log, env, streamPayment, run } = require('./lib')

function plugin (who, port) {
  return new PluginHttp({
    incoming: { port: Number(port), staticToken: `to-${who}` },
    outgoing: {
      url: `${env('OUR_HTTP')}/accounts/${who}/ilp`,
      staticToken: `from-${who}`,
      name: who,
      http2: process.env.HTTP2 === 'true'
    }
  })
}

run(async () => {
  log(`plugins POST to us over ${process.env.HTTP2 === 'true' ? 'HTTP/2 (h2c)' : 'HTTP/1.1'}`)
  await streamPayment({
    sender: () => plugin('sender', env('SENDER_PORT')),
    receiver: () => plugin('receiver', env('RECEIVER_PORT')),
    amount: process.env.AMOUNT || '10000',
    label: 'http sender -> ours -> http receiver'
  })
})
