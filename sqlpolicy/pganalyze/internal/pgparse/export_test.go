package pgparse

// Decode exposes the JSON decoder alone, without the pg.Parse fallback, so
// tests can tell a decoded tree from one pg.Parse made.
var Decode = decode
