// Writes tests/data/stream/js_client_packets.json: Prepares' data as ilp-protocol-stream
// 2.7.2-alpha.3 encrypts a client's packets (random IVs), with the condition it puts on them,
// for the receiver's tests to decide on.
//   (in scripts/interop, after npm ci) node gen-stream-vectors.js OUT
const fs = require('fs')
const { Packet, IlpPacketType, ConnectionNewAddressFrame, StreamMaxMoneyFrame, ConnectionMaxDataFrame,
  ConnectionMaxStreamIdFrame, StreamMoneyFrame, ConnectionCloseFrame, ErrorCode } = require('ilp-protocol-stream/dist/src/packet')
const crypto = require('ilp-protocol-stream/dist/src/crypto')

async function main () {
  const secret = Buffer.alloc(32, 5)
  const key = await crypto.generatePskEncryptionKey(secret)
  const fulfillmentKey = await crypto.generateFulfillmentKey(secret)
  const packets = []
  const add = async (name, amount, packet, fulfillable) => {
    const data = await packet.serializeAndEncrypt(key)
    const condition = fulfillable
      ? await crypto.hash(await crypto.generateFulfillment(fulfillmentKey, data))
      : await crypto.generateRandomCondition()
    packets.push({ name, amount: String(amount), data: data.toString('base64'), condition: condition.toString('base64') })
}
// @interledger/pay 0.2.2's first packet to a receiver whose token is not 24 characters long.
await add('pay establishment', 0, new Packet(1, IlpPacketType.Prepare, 0, [
  new ConnectionNewAddressFrame(''), new StreamMaxMoneyFrame(1, 0, 0),
  new ConnectionMaxDataFrame(0), new ConnectionMaxStreamIdFrame(1)
]), true)
await add('money on two streams', 100, new Packet(2, IlpPacketType.Prepare, 90, [
  new StreamMoneyFrame(1, 1), new StreamMoneyFrame(3, 2)
]), true)
await add('rate probe', 1000, new Packet(3, IlpPacketType.Prepare, 0, [new StreamMoneyFrame(1, 1)]), false)
await add('closing with money', 10, new Packet(4, IlpPacketType.Prepare, 0, [
  new StreamMoneyFrame(1, 1), new ConnectionCloseFrame(ErrorCode.NoError, '')
]), true)
fs.writeFileSync(process.argv[2], JSON.stringify({
  generator: 'ilp-protocol-stream 2.7.2-alpha.3 (scripts/interop/gen-stream-vectors.js)',
  shared_secret: secret.toString('base64'),
  packets
}, null, 2) + '\n')
}
main().catch(e => { console.error(e); process.exit(1) })
