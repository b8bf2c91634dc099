(data) => ({ ranSecondStep: true })
