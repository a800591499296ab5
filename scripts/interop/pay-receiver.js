'use strict'
// Sending: a JS receiver that our node pays. It is a BTP child of a connector (ours, or the JS
// ilp-connector peered with ours), learns its address over IL-DCP, and serves SPSP on
// 127.0.0.1:SPSP_PORT so that `ilp-connector pay --to http://127.0.0.1:SPSP_PORT/` finds it:
//   RECEIVER=stream  ilp-protocol-stream's createServer (application/spsp4+json), every
//                    stream accepted with no receive limit;
//   RECEIVER=psk2    ilp-protocol-psk2 0.5.0's createReceiver (application/spsp+json with
//                    asset_info, which PSK2 itself never tells);
//   RECEIVER=stream-receiver  @interledger/stream-receiver 0.2.2's stateless StreamServer
//                    behind the plugin's data handler, its credentials carrying the asset (else
//                    it never answers ConnectionNewAddress with ConnectionAssetDetails).
// GET /total answers what the receiver library counted as received; the script prints
// "READY" once it serves, and runs until SIGTERM.
//
// Environment: RECEIVER, CONNECTOR_BTP, RECEIVER_TOKEN, SPSP_PORT.

const crypto = require('crypto')
const http = require('http')
const { createServer } = require('ilp-protocol-stream')
const { createReceiver } = require('ilp-protocol-psk2')
const { env, btpClient, withTimeout, log } = require('./lib')

async function main () {
  const kind = env('RECEIVER')
  const plugin = btpClient(env('CONNECTOR_BTP'), 'receiver', env('RECEIVER_TOKEN'))
  // Through the JS connector the child connects once its listener is up: retry a while.
  const deadline = Date.now() + 30000
  for (;;) {
    try {
      await withTimeout(plugin.connect(), 5000, 'receiver plugin connects')
      break
    } catch (e) {
      if (Date.now() > deadline) throw e
      await new Promise((resolve) => setTimeout(resolve, 500))
    }
  }
  let total = 0n
  let answer
  if (kind === 'stream') {
    const server = await withTimeout(createServer({ plugin }), 15000, 'STREAM server (IL-DCP)')
    server.on('connection', (connection) => {
      connection.on('stream', (stream) => {
        stream.setReceiveMax(Infinity)
        stream.on('money', (amount) => { total += BigInt(amount) })
      })
    })
    answer = () => {
      const { destinationAccount, sharedSecret } = server.generateAddressAndSecret()
      return {
        type: 'application/spsp4+json',
        body: { destination_account: destinationAccount, shared_secret: sharedSecret.toString('base64') }
      }
    }
  } else if (kind === 'psk2') {
    const receiver = await withTimeout(createReceiver({
      plugin,
      requestHandler: (params) => {
        total += BigInt(params.amount.toString())
        params.accept(Buffer.alloc(0))
      }
    }), 15000, 'PSK2 receiver (IL-DCP)')
    answer = () => {
      const { destinationAccount, sharedSecret } = receiver.generateAddressAndSecret()
      return {
        type: 'application/spsp+json',
        body: {
          destination_account: destinationAccount,
          shared_secret: sharedSecret.toString('base64'),
          asset_info: { code: 'USD', scale: 9 }
        }
      }
    }
  } else if (kind === 'stream-receiver') {
    const { StreamServer } = require('@interledger/stream-receiver')
    const { deserializeIlpPrepare, serializeIlpReply, isIlpReply } = require('ilp-packet')
    const ildcp = require('ilp-protocol-ildcp')
    const { clientAddress } = await withTimeout(ildcp.fetch((data) => plugin.sendData(data)), 15000, 'IL-DCP')
    const server = new StreamServer({ serverSecret: crypto.randomBytes(32), serverAddress: clientAddress })
    plugin.registerDataHandler(async (data) => {
      const prepare = deserializeIlpPrepare(data)
      const reply = server.createReply(prepare)
      if (isIlpReply(reply)) return serializeIlpReply(reply)
      total += BigInt(prepare.amount)
      return serializeIlpReply(reply.accept())
    })
    answer = () => {
      const { ilpAddress, sharedSecret } = server.generateCredentials({ asset: { code: 'USD', scale: 9 } })
      return {
        type: 'application/spsp4+json',
        body: { destination_account: ilpAddress, shared_secret: sharedSecret.toString('base64') }
      }
    }
  } else {
    throw new Error(`RECEIVER must be stream, psk2 or stream-receiver, not ${kind}`)
  }
  const spsp = http.createServer((req, res) => {
    if (req.url === '/total') {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ total: total.toString() }))
      return
    }
    const { type, body } = answer()
    res.writeHead(200, { 'content-type': type })
    res.end(JSON.stringify(body))
  })
  await new Promise((resolve) => spsp.listen(Number(env('SPSP_PORT')), '127.0.0.1', resolve))
  process.on('SIGTERM', () => {
    log(`received ${total}`)
    process.exit(0)
  })
  log(`READY ${kind} receiver, SPSP on port ${env('SPSP_PORT')}`)
}

main().catch((e) => {
  console.error('FAIL:', e && e.stack ? e.stack : e)
  process.exit(1)
})
