'use strict'
// A local Ethereum chain for the settlement engine's tests and how-to (ganache 7.9.2, installed
// here by `npm ci`): deterministic accounts (1000 ETH each, the well-known test mnemonic), chain
// id 1337, a block per transaction. It listens on 127.0.0.1 on the port given as the first
// argument, or on one the OS picks (the ganache command line refuses port 0), and prints
// "LISTENING <port>" once it serves JSON-RPC. SIGTERM or SIGINT stop it cleanly.
//
// Ganache does not check a signed transaction with nonce 0 against replays: the same signed
// bytes sent twice pay twice. Real nodes refuse the second copy, and an engine that broadcasts a
// signed transaction again after a restart relies on that, so before it listens every account
// sends itself one transaction of no value: no account has nonce 0 any more.
const ganache = require('ganache')

const accounts = Number(process.env.GANACHE_ACCOUNTS || 10)
const port = Number(process.argv[2] || 0)
const server = ganache.server({
  wallet: { deterministic: true, totalAccounts: accounts, defaultBalance: 1000 },
  chain: { chainId: 1337, networkId: 1337 },
  logging: { quiet: true }
})

async function main () {
  await server.listen(port, '127.0.0.1')
  const provider = server.provider
  const addresses = await provider.request({ method: 'eth_accounts', params: [] })
  for (const from of addresses) {
    await provider.request({
      method: 'eth_sendTransaction',
      params: [{ from, to: from, value: '0x0', gasPrice: '0x77359400' }]
    })
  }
  console.log('LISTENING ' + server.address().port)
}

main().catch((err) => { console.error(err); process.exit(1) })

let stopping = false
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    if (stopping) return
    stopping = true
    server.close().then(() => process.exit(0), () => process.exit(1))
  })
}
