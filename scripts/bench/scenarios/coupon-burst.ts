import type { Db } from '../../../shared/db/client'
import {
  alternate,
  assertInvariants,
  type BenchContext,
  describeOutcome,
  GROUP,
  progress,
  roundRobin,
} from '../context'
import { type Buyer, makeCoupon } from '../fixtures'
import { type BenchRequest, runEach, type Sample } from '../load'
import { rateVs, type ScenarioReport } from '../report'

const MIN_RATE = 0.7
const REFUSALS = ['409 COUPON_ALREADY_ISSUED', '409 COUPON_SOLD_OUT']

/** A fixed shuffle (mulberry32): every run sends the burst in the same order. */
function shuffled<T>(items: T[], seed: number): T[] {
  let state = seed >>> 0
  const random = () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
  const out = [...items]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[out[i], out[j]] = [out[j] as T, out[i] as T]
  }
  return out
}

/** What MySQL holds for the coupon: its issued_quantity, and the user coupons it has. */
async function issuedInMysql(db: Db, couponId: number) {
  const [rows] = (await db.execute(
    `SELECT c.issued_quantity AS issued, (SELECT COUNT(*) FROM user_coupons uc WHERE uc.coupon_id = c.id) AS held
     FROM coupons c WHERE c.id = ${Number(couponId)}`,
  )) as unknown as [Array<{ issued: number; held: number }>]
  return { issued: Number(rows[0]?.issued ?? -1), held: Number(rows[0]?.held ?? -1) }
}

/**
 * 2. A coupon burst: every user asks `perUser` times (no Idempotency-Key) for one coupon of `quantity`,
 * in a fixed shuffled order, against as many cached product reads sent by the same exact-count client at
 * the same concurrency. Each burst gets a fresh coupon, and must issue exactly `quantity`, with every
 * other answer a refusal.
 */
export async function couponBurst(
  ctx: BenchContext,
  users: Buyer[],
  productIds: number[],
): Promise<ScenarioReport> {
  const { coupon } = ctx.profile
  const total = users.length * coupon.perUser
  const couponIds: number[] = []
  for (let i = 0; i < coupon.rounds; i++) couponIds.push(await makeCoupon(ctx.db, coupon.quantity))
  const nextCoupon = roundRobin(couponIds)
  const bursts: Array<{ couponId: number; sample: Sample }> = []

  const issueRound = async () => {
    const couponId = nextCoupon()
    const requests = shuffled(Array.from({ length: coupon.perUser }, () => users).flat(), couponId).map(
      (user): BenchRequest => ({
        method: 'POST',
        path: `/v1/coupons/${couponId}/issue`,
        headers: { Authorization: `Bearer ${user.token}` },
      }),
    )
    const sample = await runEach({ port: ctx.via.service, concurrency: coupon.concurrency, requests })
    bursts.push({ couponId, sample })
    return sample
  }
  const nextProduct = roundRobin(productIds)
  const readRound = () =>
    runEach({
      port: ctx.via.service,
      concurrency: coupon.concurrency,
      requests: Array.from({ length: total }, () => ({
        method: 'GET' as const,
        path: `/v1/products/${nextProduct()}`,
      })),
    })

  progress(
    `2. coupon burst: ${coupon.rounds} round(s) of ${total.toLocaleString('en-US')} requests each side ` +
      `(${users.length} users x ${coupon.perUser} for a coupon of ${coupon.quantity}), ${coupon.concurrency} at a time`,
  )
  const [reads, issues] = await alternate(
    ctx,
    'coupon burst',
    [
      { name: 'cached GET', serving: GROUP.http, round: readRound, allowed: ['200'] },
      { name: 'service', serving: GROUP.http, round: issueRound, allowed: ['201', ...REFUSALS] },
    ],
    coupon.rounds,
  )
  if (!reads || !issues) throw new Error('coupon burst: a side is missing')
  progress(`  cached GET: ${describeOutcome(reads.outcome, 'req/s')}`)
  progress(`  issue:      ${describeOutcome(issues.outcome, 'req/s')}`)

  const checked: string[] = []
  for (const { couponId, sample } of bursts) {
    const answered = sample.statuses['201'] ?? 0
    const mysql = await issuedInMysql(ctx.db, couponId)
    if (answered !== coupon.quantity || mysql.issued !== coupon.quantity || mysql.held !== coupon.quantity) {
      throw new Error(
        `coupon burst on coupon ${couponId}: ${answered} answered 201, issued_quantity ${mysql.issued}, ` +
          `${mysql.held} user_coupons rows; expected exactly ${coupon.quantity} each`,
      )
    }
    checked.push(
      `coupon ${couponId}: 201 x ${answered}, issued_quantity ${mysql.issued}, ${mysql.held} user coupons`,
    )
  }
  await assertInvariants(ctx.db, 'the coupon burst', { couponIds, userIds: users.map((u) => u.userId) })
  ctx.checkService('the coupon burst')

  const title = '2. coupon burst'
  const rate = issues.outcome.perSecond / reads.outcome.perSecond
  return {
    title,
    method:
      `${users.length} users x ${coupon.perUser} POST /v1/coupons/{id}/issue each (no Idempotency-Key), in a fixed ` +
      `shuffled order, for one coupon of ${coupon.quantity} (a fresh one per burst), vs as many cached GET ` +
      `/v1/products/{id}, both through nginx by the same exact-count client, ${coupon.concurrency} at a time; ` +
      `${coupon.rounds} round(s) per side`,
    targets: [
      {
        scenario: title,
        measure: 'req/s, issue / cached GET',
        measured: rateVs(issues, reads, 'req/s'),
        target: `>= ${MIN_RATE.toFixed(2)}x`,
        met: rate >= MIN_RATE,
      },
      {
        scenario: title,
        measure: 'coupons issued per burst (201s, issued_quantity, user_coupons)',
        measured: `exactly ${coupon.quantity} in each of ${bursts.length}`,
        target: `exactly ${coupon.quantity}, the rest 409 ALREADY_ISSUED / SOLD_OUT`,
        met: true,
      },
    ],
    comparisons: [{ scenario: title, unit: 'req/s', service: issues, ceiling: reads }],
    details: [`Checked in MySQL: ${checked.join('; ')}.`],
  }
}
