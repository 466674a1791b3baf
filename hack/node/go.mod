module bandsy.app/hack/node

go 1.26.0
