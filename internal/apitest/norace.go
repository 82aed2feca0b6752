//go:build !race

package apitest

const underRace = false
