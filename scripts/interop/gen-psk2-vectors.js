// Writes tests/data/psk2/vectors.json: PSK2 packets as ilp-protocol-psk2 0.5.0 encrypts them
// (random IVs: the Rust side decrypts them) and its fulfillment of each packet's data.
//   npm install ilp-protocol-psk2@0.5.0 && node scripts/interop/gen-psk2-vectors.js OUT
const fs = require('fs')
const BigNumber = require('bignumber.js')
const encoding = require('ilp-protocol-psk2/src/encoding')
const condition = require('ilp-protocol-psk2/src/condition')

const secret = Buffer.alloc(32, 5)
const vectors = []
const add = (name, packet, data) => vectors.push({
  name,
  packet,
  data: data.toString('base64'),
  fulfillment: condition.dataToFulfillment(secret, data).toString('base64')
})
for (const [type, requestId, amount, payload] of [
  [4, 77, '1000', 'hello'], [5, 1, '0', ''], [6, 4294967295, '18446744073709551615', 'x']
]) {
  add(`request type ${type}`, { type, requestId, amount, data: Buffer.from(payload).toString('base64') },
    encoding.serializePskPacket(secret, { type, requestId, amount: new BigNumber(amount), data: Buffer.from(payload) }))
}
for (const [type, sequence, paymentAmount, chunkAmount] of [[0, 0, '100', '5'], [1, 3, '0', '870']]) {
  const paymentId = Buffer.alloc(16, 9)
  add(`legacy type ${type}`, { type, paymentId: paymentId.toString('base64'), sequence, paymentAmount, chunkAmount },
    encoding.serializeLegacyPskPacket(secret, { type, paymentId, sequence, paymentAmount: new BigNumber(paymentAmount), chunkAmount: new BigNumber(chunkAmount) }))
}
fs.writeFileSync(process.argv[2], JSON.stringify({
  generator: 'ilp-protocol-psk2 0.5.0 (scripts/interop/gen-psk2-vectors.js)',
  shared_secret: secret.toString('base64'),
  vectors
}, null, 2) + '\n')
