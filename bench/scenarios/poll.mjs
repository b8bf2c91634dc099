// The Node contender: LOOPS concurrent async loops, each ATTEMPTS fetch() GETs + JSON parse.
// node poll.mjs URL LOOPS ATTEMPTS  ->  {"requests": n, "seconds": s}
const [url, loops, attempts] = [process.argv[2], +process.argv[3], +process.argv[4]];
let count = 0;

async function loop() {
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const resp = await fetch(url);
    await resp.json();
    count++;
    if (attempt >= attempts) break;
  }
}

const started = performance.now();
await Promise.all(Array.from({ length: loops }, loop));
const seconds = (performance.now() - started) / 1000;
console.log(JSON.stringify({ requests: count, seconds }));
