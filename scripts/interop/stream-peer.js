'use strict'
// Scenario 2: the JS ilp-connector (test.js) peered with ours (test.ours) over BTP, relation
// peer, CCP both ways. alice is our child (BTP client of our connector), bob the JS
// connector's child (BTP client of its ilp-plugin-btp listener). A STREAM payment goes
// alice -> ours -> JS -> bob, another bob -> JS -> ours -> alice: each crossing needs the routes
// one connector learned from the other over CCP, so they are retried until those arrive.
//
// Environment: OUR_BTP, ALICE_TOKEN, JS_BTP (ws://127.0.0.1:PORT of bob's listener), BOB_TOKEN,
// AMOUNT (default 10000).

const { env, btpClient, connect, streamPayment, retryUntil, run } = require('./lib')

run(async () => {
  const amount = process.env.AMOUNT || '10000'
  const alice = btpClient(env('OUR_BTP'), 'alice', env('ALICE_TOKEN'))
  const bob = btpClient(env('JS_BTP'), 'bob', env('BOB_TOKEN'))
  await connect(alice, 'alice (child of ours)')
  // The JS connector may still be starting: retry bob's connection.
  await retryUntil(() => connect(bob, 'bob (child of the JS connector)', 5000), 30000, 'bob connects')
  await retryUntil(
    () => streamPayment({ senderPlugin: alice, receiverPlugin: bob, amount, ms: 15000, label: 'alice -> ours -> JS -> bob' }),
    60000, 'alice pays bob')
  await retryUntil(
    () => streamPayment({ senderPlugin: bob, receiverPlugin: alice, amount, ms: 15000, label: 'bob -> JS -> ours -> alice' }),
    60000, 'bob pays alice')
  await alice.disconnect()
  await bob.disconnect()
}, 150000)
