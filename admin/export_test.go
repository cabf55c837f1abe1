package admin

// SetVerifyHook sets the hook run inside each password check's slot.
func SetVerifyHook(f func()) { verifyHook = f }

// MaxVerifying is the bound on password checks running at once.
var MaxVerifying = maxVerifying
