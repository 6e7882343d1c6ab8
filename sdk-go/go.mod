module github.com/treadle-dev/treadle/sdk-go

go 1.26

require (
	github.com/coder/websocket v1.8.14
	github.com/santhosh-tekuri/jsonschema/v6 v6.0.2
)

require golang.org/x/text v0.14.0 // indirect
