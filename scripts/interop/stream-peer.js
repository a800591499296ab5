'use strict'
// Scenario 2: the JS ilp-connector (test.js) peered with ours (test.ours) over BTP, relation
// peer, CCP both ways. alice is our child (BTP client of our connector), bob the JS
// connector's child (BTP client of its ilp-plugin-btp listener). A STREAM payment goes
// alice -> ours -> JS -> bob, another bob -> JS -> ours -> alice: each crossing needs the routes
// one connector learned from the other over CCP, so each is retried until those arrive.
//
// Environment: OUR_BTP, ALICE_TOKEN, JS_BTP (ws://127.0.0.1:PORT of bob's listener), BOB_TOKEN,
// AMOUNT (default 10000).

const { env, btpClient, streamPayment, retryUntil, run } = require('./lib')

run(async () => {
  const amount = process.env.AMOUNT || '10000'
  const alice = () => btpClient(env('OUR_BTP'), 'alice', env('ALICE_TOKEN'))
  const bob = () => btpClient(env('JS_BTP'), 'bob', env('BOB_TOKEN'))
  await retryUntil(
    () => streamPayment({ sender: alice, receiver: bob, amount, ms: 10000, label: 'alice -> ours -> JS -> bob' }),
    60000, 'alice pays bob')
  await retryUntil(
    () => streamPayment({ sender: bob, receiver: alice, amount, ms: 10000, label: 'bob -> JS -> ours -> alice' }),
    60000, 'bob pays alice')
}, 150000)
