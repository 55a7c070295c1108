package nodedump

// Script is the dump script with DefaultScriptOptions, and ScriptCommand
// the argv that runs it. Tests only: built at init they cost every command
// of the binary, simulate included, a millisecond and a half (see
// nodedumptest.ScriptCommand for other packages' tests).
var (
	Script        = ScriptFor(DefaultScriptOptions)
	ScriptCommand = CommandFor(DefaultScriptOptions)
)
