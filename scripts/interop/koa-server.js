'use strict'
// Paid HTTP, client side: a koa-ilp 1.1.1 server for our `ilp-connector http` to pay. Its PSK2
// receiver (ilp-protocol-psk2 0.3.1, koa-ilp's own) is our BTP child (KOA_BTP, user koa); its
// address comes from our node over IL-DCP. POST /upload costs PRICE of its units; GET /total
// tells what koa-ilp was paid (what its token balances hold plus what uploads spent) and how
// many uploads it served. Prints READY once listening on PORT.
//
// Environment: KOA_BTP, KOA_TOKEN, PORT, PRICE.

const Koa = require('koa')
const KoaIlp = require('koa-ilp')
const { env, btpClient, withTimeout, log } = require('./lib')

async function main () {
  const price = Number(env('PRICE'))
  const plugin = btpClient(env('KOA_BTP'), 'koa', env('KOA_TOKEN'))
  await withTimeout(plugin.connect(), 15000, 'koa plugin connects')
  const ilp = new KoaIlp({ plugin })
  await withTimeout(ilp.connect(), 15000, 'the PSK2 receiver (IL-DCP)')
  let uploads = 0
  let spent = 0
  const app = new Koa()
  app.use(async (ctx, next) => {
    if (ctx.method === 'GET' && ctx.path === '/total') {
      let held = 0
      for (const b of Object.values(ilp.balances)) held += Number(b.toString())
      ctx.body = { uploads, spent, held, paid: held + spent }
      return
    }
    await next()
  })
  app.use(async (ctx, next) => {
    if (ctx.method === 'POST' && ctx.path === '/upload') {
      await ilp.paid({ price })(ctx, async () => {
        uploads += 1
        spent += price
        ctx.body = `uploaded for ${price}`
      })
      return
    }
    await next()
  })
  app.listen(Number(env('PORT')), '127.0.0.1', () => log('READY'))
}

main().catch((e) => {
  console.error('FAIL:', e && e.stack ? e.stack : e)
  process.exit(1)
})
