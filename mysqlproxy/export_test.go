package mysqlproxy

// SetRelayForTest sets the relay of a server that is not serving yet: the
// wire tests run against both relays (relay_test.go).
func (s *Server) SetRelayForTest(r Relay) { s.relay = r }
