// k6 load test of llmkg's allocate and search endpoints.
//
//   k6 run loadtest/k6-scalability-test.js                      # the full profile (28 min)
//   PROFILE=short k6 run loadtest/k6-scalability-test.js        # 90 s, for local runs
//   make loadtest                                               # short, against a local server
//
// Environment: TARGET_URL (default http://localhost:8080), EMBEDDING_DIM (default 768, the
// [scalability.hnsw] dimension of the server's config), AUTH_TOKEN (sent as a Bearer token
// when set), PROFILE (short | full, default full).
import http from 'k6/http';
import { check, sleep } from 'k6';
import { Rate } from 'k6/metrics';

// The share of checks that failed. Every check records true or false: the seed only ever
// added 1 on failure, so a single failure read as a 100% error rate.
const errorRate = new Rate('errors');

const PROFILES = {
  full: [
    { duration: '2m', target: 100 }, // ramp up
    { duration: '5m', target: 100 }, // stay at 100 users
    { duration: '2m', target: 200 }, // ramp up to 200
    { duration: '5m', target: 200 }, // stay at 200
    { duration: '2m', target: 500 }, // ramp up to 500
    { duration: '10m', target: 500 }, // stay at 500
    { duration: '2m', target: 0 }, // ramp down
  ],
  short: [
    { duration: '20s', target: 200 },
    { duration: '60s', target: 200 },
    { duration: '10s', target: 0 },
  ],
};

const PROFILE = __ENV.PROFILE === 'short' ? 'short' : 'full';
const BASE_URL = (__ENV.TARGET_URL || 'http://localhost:8080').replace(/\/+$/, '');
const EMBEDDING_DIM = parseInt(__ENV.EMBEDDING_DIM || '768', 10);
if (!(EMBEDDING_DIM > 0)) {
  throw new Error(`EMBEDDING_DIM must be a positive integer, not "${__ENV.EMBEDDING_DIM}"`);
}

const HEADERS = { 'Content-Type': 'application/json' };
if (__ENV.AUTH_TOKEN) {
  HEADERS.Authorization = `Bearer ${__ENV.AUTH_TOKEN}`;
}

export const options = {
  stages: PROFILES[PROFILE],
  thresholds: {
    // Per endpoint, through the requests' name tags.
    'http_req_duration{name:allocate}': ['p(95)<100'],
    'http_req_duration{name:search}': ['p(95)<50'],
    errors: ['rate<0.01'],
  },
};

// Records one outcome per check: true for a failed check, false for a passed one.
function checked(response, checks) {
  for (const [label, fn] of Object.entries(checks)) {
    const ok = check(response, { [label]: fn });
    errorRate.add(!ok);
  }
}

export default function () {
  const allocationPayload = JSON.stringify({
    fact: {
      subject: `entity_${Math.floor(Math.random() * 1000000)}`,
      predicate: 'type',
      object: 'TestEntity',
      confidence: Math.random(),
    },
  });
  const allocationResponse = http.post(`${BASE_URL}/api/v1/allocate`, allocationPayload, {
    headers: HEADERS,
    tags: { name: 'allocate' },
  });
  checked(allocationResponse, {
    'allocation status is 200': (r) => r.status === 200,
    'allocation latency < 100ms': (r) => r.timings.duration < 100,
  });

  const searchPayload = JSON.stringify({
    query: {
      embedding: Array.from({ length: EMBEDDING_DIM }, () => Math.random()),
      k: 50,
    },
  });
  const searchResponse = http.post(`${BASE_URL}/api/v1/search`, searchPayload, {
    headers: HEADERS,
    tags: { name: 'search' },
  });
  checked(searchResponse, {
    'search status is 200': (r) => r.status === 200,
    'search latency < 50ms': (r) => r.timings.duration < 50,
  });

  sleep(1);
}
