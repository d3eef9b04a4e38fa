import { pushCodes } from './dist/src/retrieval/clickhouse/push.js';
const t0 = Date.now();
try {
  const r = await Promise.all([1,2,3].map((i) => pushCodes('/tmp/chx/db.fghc', 'http://127.0.0.1:18123', 'rep' + i + Date.now(), { batch: 2000 })));
  console.log(r.map((x) => x.inserted), Date.now() - t0);
} catch (e) { console.log('ERR', e.message, e.cause?.code); }
