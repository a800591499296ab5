'use strict'
// Receiving: the ilp-spsp 1.2.0 command line (`ilp-spsp send --receiver URL --amount N`, which
// pays over STREAM when the SPSP answer is application/spsp4+json) pays a local account of our
// connector, with its plugin from ILP_CREDENTIALS (ilp-plugin 3.5.4: ilp-plugin-btp). It must
// exit 0, and our admin API must show AMOUNT credited (no spread, one asset).
//
// Environment: PAYER_BTP, PAYER_TOKEN, SPSP_URL, ADMIN_URL, ACCOUNT, AMOUNT.

const { execFile } = require('child_process')
const path = require('path')
const { env, log, run, balance } = require('./lib')

function spspSend (receiver, amount, credentials) {
  const cli = path.join(__dirname, 'node_modules', 'ilp-spsp', 'index.js')
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [cli, 'send', '--receiver', receiver, '--amount', amount], {
      env: { ...process.env, ILP_CREDENTIALS: JSON.stringify(credentials) },
      timeout: 60000
    }, (error, stdout, stderr) => {
      log(`ilp-spsp: ${stdout.trim().replace(/\n/g, ' | ')}`)
      if (error) reject(new Error(`ilp-spsp send failed: ${error.message}\n${stderr}`))
      else resolve()
    })
  })
}

run(async () => {
  const amount = BigInt(env('AMOUNT'))
  const account = env('ACCOUNT')
  const admin = env('ADMIN_URL')
  const before = await balance(admin, account)
  const btp = new URL(env('PAYER_BTP'))
  await spspSend(env('SPSP_URL'), amount.toString(), {
    server: `btp+ws://payer:${encodeURIComponent(env('PAYER_TOKEN'))}@${btp.host}`
  })
  const credited = before - await balance(admin, account)
  log(`ok, sent ${amount}, credited ${credited}`)
  if (credited !== amount) throw new Error(`credited ${credited}, sent ${amount}`)
})
