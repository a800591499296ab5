'use strict'
// A JS ilp-protocol-stream server for scripts/bench.sh: the JS side of the receiver benchmark.
// It connects to the JS connector as a BTP child (RECEIVER_BTP, secret RECEIVER_TOKEN), learns
// its address over IL-DCP, accepts every stream with no receive limit, prints one JSON line
// {"destination_account", "shared_secret"} (base64) for ilp-load, and serves until killed.

const { createServer } = require('ilp-protocol-stream')
const { env, btpClient, withTimeout, log } = require('./lib')

async function main () {
  const plugin = btpClient(env('RECEIVER_BTP'), 'receiver', env('RECEIVER_TOKEN'))
  await withTimeout(plugin.connect(), 15000, 'receiver plugin connects')
  const server = await withTimeout(createServer({ plugin }), 15000, 'STREAM server (IL-DCP)')
  let received = 0n
  server.on('connection', (connection) => {
    connection.on('stream', (stream) => {
      stream.setReceiveMax(Infinity)
      stream.on('money', (amount) => { received += BigInt(amount) })
    })
  })
  process.on('SIGTERM', () => {
    log(`received ${received}`)
    process.exit(0)
  })
  const { destinationAccount, sharedSecret } = server.generateAddressAndSecret()
  console.log(JSON.stringify({
    destination_account: destinationAccount,
    shared_secret: sharedSecret.toString('base64')
  }))
}

main().catch((e) => {
  console.error('FAIL:', e && e.stack ? e.stack : e)
  process.exit(1)
})
