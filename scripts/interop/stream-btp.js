'use strict'
// Scenario 1: JS ilp-plugin-btp sender -> our connector -> JS ilp-plugin-btp receiver, carrying
// one JS ilp-protocol-stream payment. Both plugins are BTP clients of our connector's
// btp-server accounts (children), and learn their addresses from it over IL-DCP.
//
// Environment: OUR_BTP (ws://HOST:PORT), SENDER_TOKEN, RECEIVER_TOKEN, AMOUNT (default 10000).

const { env, btpClient, streamPayment, run } = require('./lib')

run(async () => {
  await streamPayment({
    sender: () => btpClient(env('OUR_BTP'), 'sender', env('SENDER_TOKEN')),
    receiver: () => btpClient(env('OUR_BTP'), 'receiver', env('RECEIVER_TOKEN')),
    amount: process.env.AMOUNT || '10000',
    label: 'btp sender -> ours -> btp receiver'
  })
})
