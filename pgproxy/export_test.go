package pgproxy

// SetCopyHooksForTest makes flush run as every session whose
// application_name is app hands staged requests to the upstream side
// (flushUpTo), and copyStarted as it handles a CopyInResponse; copyIn
// reports whether the session is in COPY FROM STDIN. Empty app removes
// them.
func SetCopyHooksForTest(app string, flush func(copyIn func() bool), copyStarted func()) {
	if app == "" {
		testHooks.Store(nil)
		return
	}
	testHooks.Store(&hooks{
		flush: func(c *conn) {
			if c.appName == app {
				flush(c.copyIn.Load)
			}
		},
		copyStarted: func(c *conn) {
			if c.appName == app {
				copyStarted()
			}
		},
	})
}
