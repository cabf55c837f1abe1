// Package benchtools holds the small programs scripts/bench.sh builds and
// runs next to keyhole: naiverelay (the cheapest proxy one could write, a
// baseline for what relaying alone costs) and idleconns (holds idle
// sessions open to measure resident memory per session). They are
// measurement tools, not part of keyhole.
package benchtools
