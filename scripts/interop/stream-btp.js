'use strict'
// Scenario 1: JS ilp-plugin-btp sender -> our connector -> JS ilp-plugin-btp receiver, carrying
// one JS ilp-protocol-stream payment. Both plugins are BTP clients of our connector's
// btp-server accounts (children), and learn their addresses from it over IL-DCP.
//
// Environment: OUR_BTP (ws://HOST:PORT), SENDER_TOKEN, RECEIVER_TOKEN, AMOUNT (default 10000).

const { env, btpClient, connect, streamPayment, run } = require('./lib')

run(async () => {
  const amount = process.env.AMOUNT || '10000'
  const sender = btpClient(env('OUR_BTP'), 'sender', env('SENDER_TOKEN'))
  const receiver = btpClient(env('OUR_BTP'), 'receiver', env('RECEIVER_TOKEN'))
  await connect(sender, 'sender plugin')
  await connect(receiver, 'receiver plugin')
  await streamPayment({ senderPlugin: sender, receiverPlugin: receiver, amount, label: 'btp sender -> ours -> btp receiver' })
  await sender.disconnect()
  await receiver.disconnect()
})
